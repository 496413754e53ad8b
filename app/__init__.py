"""The application on top of every package: the ``inspector`` command, its core subcommands and the demo.

Nothing below imports ``app``; it is the one place allowed to reach into training, calibration, edge and
controller at once.
"""
