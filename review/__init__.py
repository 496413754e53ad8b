"""The review page: archived frames from the stations, relabeled by an operator into the dataset folders.

A sibling of ``controller/`` in the middle layer, on the core only: it reads archives through the result
contract (``inspector.protocol``), never through the station's code.
"""
