"""Station logging: plain text for a terminal, or one JSON object per line for journald, Loki or Elastic.

Example:
    >>> import logging, io
    >>> stream = io.StringIO(); handler = logging.StreamHandler(stream); handler.setFormatter(JsonFormatter())
    >>> logger = logging.getLogger("demo"); logger.addHandler(handler); logger.warning("camera %s lost", 0)
    >>> '"msg": "camera 0 lost"' in stream.getvalue()
    True
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "thread", "msg"}`` plus ``exc`` when an exception is attached."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "thread": record.threadName,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text") -> None:
    """(Re)configure the root logger; replaces handlers set earlier by ``inspector``'s main."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
