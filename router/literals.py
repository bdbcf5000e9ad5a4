"""SQL literal text <-> Python values, exactly as MySQL reads and writes them.

The tokenizer hands literal *texts* to the planner; routing needs their *values* (a shard key
compared with `'42'` or `0x2a`), and prepared-statement parameters need the reverse: a value
rendered as a literal that the backend reads back as the same value.
"""

from __future__ import annotations

import datetime
import math
import re
from decimal import Decimal
from types import MappingProxyType

from router.errors import ProxyError

# What mysql_real_escape_string escapes, so a rendered parameter survives any sql_mode
# except NO_BACKSLASH_ESCAPES (which the proxy refuses: proxy.session._run_sets).
_ESCAPES = MappingProxyType(
    str.maketrans(
        {"\\": "\\\\", "'": "\\'", '"': '\\"', "\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z"}
    )
)

# MySQL's backslash sequences; any other `\x` is just `x`, except `\%` and `\_`, which keep
# their backslash so LIKE patterns still see the escape.
_UNESCAPES = MappingProxyType(
    {
        "0": "\0",
        "b": "\b",
        "n": "\n",
        "r": "\r",
        "t": "\t",
        "Z": "\x1a",
        "%": "\\%",
        "_": "\\_",
    }
)

_STRING_PIECE = re.compile(r"""'((?:[^'\\]|\\.|'')*)'|"((?:[^"\\]|\\.|"")*)\"""", re.S)
_INTRODUCER = re.compile(r"_(\w+)\s*(.*)", re.S)
_ESCAPE_SEQ = re.compile(r"\\(.)|''|\"\"", re.S)


def _unescape_match(match: re.Match[str]) -> str:
    char = match.group(1)
    if char is None:
        return match.group(0)[0]
    return _UNESCAPES.get(char, char)


def string_value(text: str) -> str:
    """The value of one or more adjacent quoted strings (`'a' "b"` is `'ab'` in MySQL)."""
    parts = []
    for match in _STRING_PIECE.finditer(text):
        body = match.group(1) if match.group(1) is not None else match.group(2)
        parts.append(_ESCAPE_SEQ.sub(_unescape_match, body))
    return "".join(parts)


def literal_value(text: str) -> object:
    """The Python value of one literal as the tokenizer cut it out of a statement.

    Numbers give int, Decimal (fixed point) or float (exponent), strings give str (bytes for
    `_binary'..'`), hex literals bytes, bit literals int.
    """
    first = text[0]
    if first in "'\"":
        return string_value(text)
    lower = text[:2].lower()
    if first == "_":
        charset, quoted = _INTRODUCER.match(text).groups()  # type: ignore[union-attr]
        value = string_value(quoted)
        return value.encode("utf-8", "surrogateescape") if charset.lower() == "binary" else value
    if lower in ("x'", "0x"):
        digits = text[2:-1] if lower == "x'" else text[2:]
        if len(digits) % 2:
            digits = "0" + digits
        return bytes.fromhex(digits)
    if lower in ("b'", "0b"):
        digits = text[2:-1] if lower == "b'" else text[2:]
        return int(digits, 2) if digits else 0
    if first in "nN":
        return string_value(text[1:])
    if text.isdigit():
        return int(text)
    if "e" in text or "E" in text:
        return float(text)
    return Decimal(text)


def quote_string(value: str) -> str:
    """A single-quoted SQL string literal for `value`."""
    return "'" + value.translate(_ESCAPES) + "'"


def render_param(value: object) -> str:
    """A prepared-statement parameter as the SQL literal the backend will read back."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProxyError(f"Parameter value {value!r} can't be sent to MySQL", 1210, "HY000")
        # A DOUBLE literal (`2.0` would be a DECIMAL, and read '2.0' where MariaDB reads '2'),
        # and no negative zero, which MariaDB makes 0 for a parameter.
        text = repr(value) if value else "0"
        return text if "e" in text else text + "e0"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ProxyError(f"Parameter value {value!r} can't be sent to MySQL", 1210, "HY000")
        return format(value, "f")  # fixed point: `1E-7` would be read back as a DOUBLE
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "X'" + bytes(value).hex() + "'"
    if isinstance(value, datetime.datetime):
        return "'" + value.isoformat(sep=" ") + "'"
    if isinstance(value, datetime.date | datetime.time):
        return "'" + value.isoformat() + "'"
    if isinstance(value, datetime.timedelta):
        return "'" + _timedelta_text(value) + "'"
    raise ProxyError(f"Parameter of type {type(value).__name__} is not supported", 1210, "HY000")


def _timedelta_text(value: datetime.timedelta) -> str:
    """A TIME literal body ('-838:59:59.000000' style) for a timedelta."""
    sign = "-" if value < datetime.timedelta(0) else ""
    micros = abs(value) // datetime.timedelta(microseconds=1)
    seconds, micro = divmod(micros, 1_000_000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    text = f"{sign}{hours:02d}:{minute:02d}:{sec:02d}"
    return f"{text}.{micro:06d}" if micro else text
