"""JSON log lines: one object a line, with the keys a log shipper needs and the caller's extras."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime

from oda_fed.monitoring.logs import JsonFormatter


def _line(record: logging.LogRecord) -> dict:
    text = JsonFormatter().format(record)
    assert "\n" not in text
    return json.loads(text)


def test_a_line_has_time_level_logger_message_and_the_extra_fields() -> None:
    logger = logging.getLogger("oda_fed.test")
    record = logger.makeRecord(
        "oda_fed.test", logging.WARNING, __file__, 1, "round %s: %d records", ("r-1", 3), None,
        extra={"round_id": "r-1", "partner": "council", "method": "UploadClks"},
    )  # fmt: skip
    line = _line(record)
    assert line["level"] == "WARNING" and line["logger"] == "oda_fed.test"
    assert line["message"] == "round r-1: 3 records"
    assert (line["round_id"], line["partner"], line["method"]) == ("r-1", "council", "UploadClks")
    when = datetime.fromisoformat(line["time"])
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
    # Nothing of the record's internals (args, path, thread) is copied in.
    assert not {"args", "pathname", "thread", "msg", "exc_info"} & set(line)


def test_an_exception_is_one_field_and_the_line_stays_one_line() -> None:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = _line(record)
    assert "ValueError: broken" in line["exception"]


def test_a_value_json_cannot_write_is_written_as_text() -> None:
    record = logging.getLogger("x").makeRecord(
        "x", logging.INFO, __file__, 1, "m", (), None, extra={"path": object()}
    )
    assert _line(record)["path"].startswith("<object")
