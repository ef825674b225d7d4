"""Log lines as JSON objects, one a line, for a log shipper: the standard ``logging`` records
with ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and the fields a call passes
as ``extra`` (``round_id``, ``partner``, ``method`` and the like)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

#: The attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

#: The log formats the services offer: rich's human-readable lines, or JSON lines.
LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record.

    Examples
    --------
    >>> record = logging.LogRecord("oda_fed.x", logging.INFO, "", 0, "round %s", ("r1",), None)
    >>> record.round_id = "r1"
    >>> line = json.loads(JsonFormatter().format(record))
    >>> line["level"], line["logger"], line["message"], line["round_id"]
    ('INFO', 'oda_fed.x', 'round r1', 'r1')
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
