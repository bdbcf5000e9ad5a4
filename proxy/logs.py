"""Log lines: one line per event, as text or JSON, with the event's fields.

An event is a log record with an `event` name and fields (`log_event`); ordinary log calls are
events without fields. JSON lines carry `time`, `level`, `logger`, `message` and the fields;
text lines carry the same as `key=value` after the message. Newlines inside a message or a
field (a plan, a traceback) are escaped, so a line is always a whole event.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from router.config import Logging

_RESERVED = ("time", "level", "logger", "message")


def log_event(logger: logging.Logger, level: int, event: str, message: str, **fields: Any) -> None:
    """Log `message` as event `event` with `fields` (kept as values in JSON lines)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": {"event": event, **fields}})


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry[f"field_{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: MESSAGE key=value ...` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            record.levelname,
            f"{record.name}:",
            _one_line(record.getMessage()),
        ]
        for key, value in _fields(record).items():
            parts.append(f"{key}={_text_value(value)}")
        if record.exc_info:
            parts.append("exception=" + _text_value(self.formatException(record.exc_info)))
        return " ".join(parts)


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n") if "\n" in text else text


def _text_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


def configure(settings: Logging, level: str | None = None) -> None:
    """Send every log record to stderr in the configured format; `level` overrides the
    config's (the --log-level option)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or settings.level).upper())
