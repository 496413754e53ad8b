"""The wire contract between stations, the line controller, bridges and dashboards.

``topics`` (where), ``payloads`` (the JSON on each topic), ``commands`` (what a station accepts) and
``enums`` (the domain words those carry). Everything here is pydantic and the standard library, so every
side imports it without pulling in a model runtime.
"""
