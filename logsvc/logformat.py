"""How the programs log: ``--log-format text`` (the default: one readable line per event,
a traceback after it) or ``json`` (one JSON object per line, the traceback inside it, so a log
collector never splits an event). Shared by `logsvc serve` and `cacheshim serve`."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Final

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One line per record: time (ISO 8601, UTC, milliseconds), level, logger, message, and
    the exception's traceback as ``exc_info`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(event, ensure_ascii=False)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure_logging(level: str, log_format: str = "text") -> None:
    """Set up the root logger; ValueError for a format not in LOG_FORMATS."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"--log-format {log_format!r}: one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])
