"""What the product's long-running commands exit with: one set of numbers for every process.

The numbers are a contract with the systemd units (``RestartPreventExitStatus=`` in ``deploy/systemd/``)
and with scripts, so a number never changes meaning. ``inspector run`` (the station) uses all of them;
``inspector controller`` (the line controller and the Sparkplug bridge) uses OK, ERROR and CONFIG, with the
same meaning. The table with what a service manager should do for each is in docs/edge.md (Shutdown and
exit codes).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # stopped by SIGTERM/SIGINT, or a replay source ended and every result was delivered
    ERROR = 1  # unexpected error (a bug; for the controller also an unreachable broker or gate): restart
    CONFIG = 2  # bad command line or configuration (argparse's code too): fix it, restarting will not help
    MODEL = 3  # the bundle cannot be loaded or run: fix the model, restarting will not help
    SOURCE = 4  # the frame source cannot work as configured, or stayed lost past give_up_after_s
    OUTBOX = 5  # the outbox database cannot be opened or written (disk full, read-only)
    UNDELIVERED = 6  # a replay source ended but results are still queued (sent on the next start)
    NETWORK = 7  # the MQTT network thread died (nothing received or acknowledged any more): restart
    REFUSED = 8  # the broker refused results (kept in the outbox as rejected): fix the ACL, not the station
