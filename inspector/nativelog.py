"""Drop the lines native libraries print on success (TFLite's delegate INFO, the converter's settings line,
absl's pre-init notice) when the user did not ask for them.

Those libraries write straight to file descriptor 2 and offer no switch (TF_CPP_MIN_LOG_LEVEL does not
reach them), so the descriptor is pointed at a temporary file for the duration of the call and what was
written is passed on afterwards without the known chatter; anything else, errors included, still appears.
Quiet is ``TF_CPP_MIN_LOG_LEVEL`` >= 1, which ``inspector``'s main sets unless ``-v``.

Example:
    >>> with native_stderr_filtered():                       # doctest: +SKIP
    ...     interpreter.allocate_tensors()
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from types import ModuleType
from typing import Iterator

CHATTER = re.compile(
    r"(INFO: Created TensorFlow Lite .*delegate"
    r"|INFO: Initialized TensorFlow Lite runtime"
    r"|fully_quantize: \d"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] )"
)


def quiet() -> bool:
    """True unless the user asked for the libraries' own logs (``inspector -v`` sets the level to 0)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0")


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Run the block with fd 2 captured, then write back every line that is not known chatter."""
    if not quiet():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not CHATTER.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_quietly(module: str) -> ModuleType:
    """Import ``module`` with its load-time chatter filtered: TensorFlow prints absl's pre-init notice and
    oneDNN's banner when it loads, whatever ``TF_CPP_MIN_LOG_LEVEL`` says. Commands that will need it call
    this once, after their arguments are validated; later imports find it loaded and print nothing."""
    with native_stderr_filtered():
        return importlib.import_module(module)
