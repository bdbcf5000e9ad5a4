"""MySQL's semantics for the values the proxy computes while merging: arithmetic, comparison,
three-valued logic, and their text form in a result set.

Values are None (NULL), int, Decimal, float, or bytes (strings, temporal values). A Decimal's
exponent is MySQL's scale ("frac"): `1.50` keeps two digits, exactly as a DECIMAL result does.
Division follows MariaDB's decimal library, which computes a quotient to whole 9-digit words
and truncates (so `1/3*3` is `1.0000`, not `0.9999`); the result is rounded to the column's
scale only when it is sent.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal, InvalidOperation

from router.errors import NotSupported, ProxyError

# Exact arithmetic: far more digits than DECIMAL's 65 (81 in MariaDB's internal words).
_CONTEXT = Context(prec=200, rounding=ROUND_HALF_UP, Emin=-999999, Emax=999999)
_DIGITS_PER_WORD = 9
_MAX_FRAC = 39  # MariaDB's NOT_FIXED_DEC: the largest scale a product keeps
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_UINT_MAX = (1 << 64) - 1
DEFAULT_DIV_INCREMENT = 4


class UnsignedInt(int):
    """A value of an UNSIGNED integer column: arithmetic with it is unsigned, as in MySQL."""

    __slots__ = ()


class OutOfRange(ProxyError):
    """ER_DATA_OUT_OF_RANGE, as MySQL reports BIGINT overflow in arithmetic."""

    code, sqlstate = 1690, "22003"


def frac(value: Decimal) -> int:
    """A decimal's scale: digits after the point."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _round_up_words(digits: int) -> int:
    return -(-digits // _DIGITS_PER_WORD) * _DIGITS_PER_WORD


def _numeric(value: object, op: str) -> int | Decimal | float:
    if isinstance(value, int | Decimal | float):
        return value
    raise NotSupported(f"'{op}' on a string value while merging results across shards")


def _as_decimal(value: int | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(int(value))


def _check_int(result: int, unsigned: bool, op: str, a: object, b: object) -> int:
    if unsigned:
        if result < 0 or result > _UINT_MAX:
            raise OutOfRange(f"BIGINT UNSIGNED value is out of range in '({a} {op} {b})'")
        return UnsignedInt(result)
    if result < _INT_MIN or result > _INT_MAX:
        raise OutOfRange(f"BIGINT value is out of range in '({a} {op} {b})'")
    return result


def divide(a: object, b: object, increment: int = DEFAULT_DIV_INCREMENT) -> object:
    """a / b: NULL for NULL operands or a zero divisor; DOUBLE if either is one, else DECIMAL."""
    if a is None or b is None:
        return None
    x, y = _numeric(a, "/"), _numeric(b, "/")
    if isinstance(x, float) or isinstance(y, float):
        y = float(y)
        return None if y == 0.0 else float(x) / y
    dx, dy = _as_decimal(x), _as_decimal(y)
    if dy == 0:
        return None
    f1, f2 = frac(dx), frac(dy)
    w1, w2 = _round_up_words(f1), _round_up_words(f2)
    increment = max(increment - (w1 - f1) - (w2 - f2), 0)
    digits = _round_up_words(w1 + w2 + increment)
    quotient = _CONTEXT.divide(dx, dy)
    result = quotient.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_DOWN, context=_CONTEXT)
    return result if result else abs(result)


def arithmetic(op: str, a: object, b: object) -> object:
    """a + b, a - b, a * b, a DIV b, a % b (MOD) with MySQL's result types."""
    if a is None or b is None:
        return None
    x, y = _numeric(a, op), _numeric(b, op)
    if op in ("DIV", "%") and not y:
        return None
    if isinstance(x, float) or isinstance(y, float):
        fx, fy = float(x), float(y)
        if op == "+":
            return fx + fy
        if op == "-":
            return fx - fy
        if op == "*":
            return fx * fy
        if op == "%":
            return math.fmod(fx, fy)
        return _check_int(math.trunc(fx / fy), False, op, a, b)
    if isinstance(x, Decimal) or isinstance(y, Decimal):
        dx, dy = _as_decimal(x), _as_decimal(y)
        if op == "+":
            return _CONTEXT.add(dx, dy)
        if op == "-":
            return _CONTEXT.subtract(dx, dy)
        if op == "*":
            product = _CONTEXT.multiply(dx, dy)
            if frac(product) > _MAX_FRAC:
                product = product.quantize(
                    Decimal(1).scaleb(-_MAX_FRAC), rounding=ROUND_DOWN, context=_CONTEXT
                )
            return product
        if op == "%":
            return _CONTEXT.remainder(dx, dy)
        quotient = _CONTEXT.divide_int(dx, dy)
        return _check_int(int(quotient), False, op, a, b)
    unsigned = isinstance(x, UnsignedInt) or isinstance(y, UnsignedInt)
    if op == "+":
        return _check_int(x + y, unsigned, op, a, b)
    if op == "-":
        return _check_int(x - y, unsigned, op, a, b)
    if op == "*":
        return _check_int(x * y, unsigned, op, a, b)
    if op == "%":
        result = abs(x) % abs(y)
        return -result if x < 0 else result
    quotient = abs(x) // abs(y)
    return _check_int(-quotient if (x < 0) != (y < 0) else quotient, unsigned, op, a, b)


def negate(a: object) -> object:
    if a is None:
        return None
    x = _numeric(a, "-")
    if isinstance(x, int):
        if isinstance(x, UnsignedInt) and x:
            raise OutOfRange(f"BIGINT UNSIGNED value is out of range in '-{x}'")
        return _check_int(-x, False, "-", 0, a)
    return -x


def compare(a: object, b: object) -> int | None:
    """-1, 0 or 1 as MySQL compares two numbers; None if either is NULL."""
    if a is None or b is None:
        return None
    x, y = _numeric(a, "compare"), _numeric(b, "compare")
    if isinstance(x, float) or isinstance(y, float):
        x, y = float(x), float(y)
    return (x > y) - (x < y)


_COMPARISONS = {
    "=": lambda c: c == 0,
    "<>": lambda c: c != 0,
    "!=": lambda c: c != 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


def comparison(op: str, a: object, b: object) -> int | None:
    """1, 0 or NULL for a comparison operator; `<=>` is never NULL."""
    if op == "<=>":
        if a is None or b is None:
            return int(a is None and b is None)
        return int(compare(a, b) == 0)
    result = compare(a, b)
    if result is None:
        return None
    return int(_COMPARISONS[op](result))


def truth(value: object) -> bool | None:
    """A value as a condition: None for NULL, else whether it is non-zero."""
    if value is None:
        return None
    return bool(_numeric(value, "condition"))


def logical(op: str, values: list[object]) -> int | None:
    """AND / OR / XOR / NOT with SQL's three-valued logic."""
    truths = [truth(v) for v in values]
    if op == "NOT":
        return None if truths[0] is None else int(not truths[0])
    if op == "AND":
        if False in truths:
            return 0
        return None if None in truths else 1
    if op == "OR":
        if True in truths:
            return 1
        return None if None in truths else 0
    if None in truths:  # XOR
        return None
    return int(truths[0] != truths[1])


# --- text form ------------------------------------------------------------------------------


def format_decimal(value: int | Decimal, decimals: int) -> bytes:
    """A DECIMAL result as MySQL sends it: rounded half up to the column's scale."""
    number = _as_decimal(value)
    try:
        number = number.quantize(Decimal(1).scaleb(-decimals), context=_CONTEXT)
    except InvalidOperation:  # pragma: no cover - more than 200 digits
        raise NotSupported("a DECIMAL result too large to merge") from None
    if not number:
        number = abs(number)
    return format(number, "f").encode()


def format_double(value: float) -> bytes:
    """A DOUBLE as MariaDB prints it: the shortest digits that read back as the same value,
    fixed-point unless very large integers or very small numbers call for an exponent."""
    if value == 0.0 or not math.isfinite(value):
        return b"0" if value == 0.0 else repr(value).encode()
    text = _shortest(value)
    mantissa, _, exponent_text = text.partition("e")
    exponent = int(exponent_text)
    sign = "-" if value < 0 else ""
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    count = len(digits)
    point = exponent + 1  # digits before the decimal point
    if point < -14 or (point > 15 and count <= point):
        head = digits[0] + ("." + digits[1:] if count > 1 else "")
        return f"{sign}{head}e{exponent}".encode()
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}".encode()
    if count <= point:
        return f"{sign}{digits}{'0' * (point - count)}".encode()
    return f"{sign}{digits[:point]}.{digits[point:]}".encode()


def _shortest(value: float) -> str:
    """Scientific notation with the fewest digits that round-trip (repr's digits)."""
    text = repr(value)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        return f"{mantissa}e{int(exponent)}"
    digits = text.lstrip("-")
    whole, _, fraction = digits.partition(".")
    fraction = fraction.rstrip("0")
    if whole != "0":
        exponent = len(whole) - 1
        all_digits = (whole + fraction).rstrip("0") or "0"
    else:
        stripped = fraction.lstrip("0")
        exponent = -(len(fraction) - len(stripped) + 1)
        all_digits = stripped or "0"
    mantissa = all_digits[0] + ("." + all_digits[1:] if len(all_digits) > 1 else "")
    return f"{'-' if value < 0 else ''}{mantissa}e{exponent}"
