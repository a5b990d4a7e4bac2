"""--log-format json: one JSON object per line, a traceback inside its event (issue 22)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from logsvc.logformat import JsonFormatter, configure_logging


def test_one_line_per_event_with_its_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "applying %d failed", (7,), exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["level"] == "ERROR" and event["logger"] == "t"
    assert event["message"] == "applying 7 failed"
    assert "RuntimeError: boom" in event["exc_info"] and event["time"].endswith("Z")


def test_unknown_format_refused() -> None:
    with pytest.raises(ValueError, match="one of text, json"):
        configure_logging("INFO", "yaml")
