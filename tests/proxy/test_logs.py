"""proxy/logs.py: one line per event, JSON or text."""

from __future__ import annotations

import json
import logging
import sys

from proxy.logs import JsonFormatter, TextFormatter, log_event


def record(text: str = "hello", exc: bool = False, **fields: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("shardproxy.test", logging.WARNING, __file__, 1, text, (), exc_info)
    if fields:
        rec.fields = fields  # type: ignore[attr-defined]
    return rec


def test_json_lines_carry_the_event_fields() -> None:
    line = JsonFormatter().format(
        record("slow query", event="slow_query", plan="single read\n  ds0: SELECT 1", ms=1.5)
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "shardproxy.test"
    assert entry["message"] == "slow query"
    assert entry["plan"] == "single read\n  ds0: SELECT 1"
    assert entry["ms"] == 1.5
    assert entry["time"].endswith("Z")


def test_json_fields_never_replace_the_standard_keys() -> None:
    entry = json.loads(JsonFormatter().format(record("m", message="x", level="y")))
    assert entry["message"] == "m"
    assert entry["field_message"] == "x"
    assert entry["field_level"] == "y"


def test_text_lines_are_one_line_even_with_tracebacks() -> None:
    line = TextFormatter().format(
        record("two\nlines", exc=True, event="e", plan="a\nb", user="app", n=3, none=None)
    )
    assert "\n" not in line
    assert " WARNING shardproxy.test: two\\nlines " in line
    assert ' plan="a\\nb" user=app n=3 none=null ' in line
    assert "exception=" in line and "ValueError: boom\\nsecond line" in line


def test_log_event_skips_disabled_levels() -> None:
    logger = logging.getLogger("shardproxy.test.disabled")
    logger.setLevel(logging.ERROR)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        log_event(logger, logging.INFO, "e", "quiet")
        log_event(logger, logging.ERROR, "e", "loud", x=1)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["loud"]
    assert seen[0].fields == {"event": "e", "x": 1}  # type: ignore[attr-defined]
