"""RFC 8785 (JCS) canonical JSON.

Execution request bodies are signed over their exact bytes, and the official SDKs verify the
signature against a JCS rendering of what they received (Python and Go canonicalize; JS hashes
the raw text). Sending canonical bytes satisfies all three.

orjson with sorted keys is already canonical for the common case. It differs from JCS in three
places, which we detect with one cheap walk and only then take the slow path:
- numbers are IEEE doubles in JCS: ``1.0`` renders as ``1``, ``-0.0`` as ``0``, integers beyond
  2**53 lose precision exactly as they do in JavaScript (and in upstream's Go server);
- floats use ECMAScript's Number-to-string rules (``1e+21``, ``0.000001``, ``1e-7``);
- object keys sort by UTF-16 code units, which differs from code point order only for keys
  holding characters outside the Basic Multilingual Plane.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

_SAFE_INT = 2**53
_SORT = orjson.OPT_SORT_KEYS


def dumps(value: Any) -> bytes:
    """Serialize ``value`` as canonical JSON bytes."""
    if _is_plain(value):
        return _exact(orjson.dumps(value, option=_SORT))
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts).encode("utf-8")


def dumps_plain(value: Any) -> bytes:
    """Canonical JSON for a value the caller knows holds only strings, bools, None and integers
    within ±2**53 (no floats): skips the check :func:`dumps` makes."""
    return _exact(orjson.dumps(value, option=_SORT))


def _exact(raw: bytes) -> bytes:
    """A copy of ``raw`` that holds only its bytes.

    orjson's output keeps its whole working buffer (4 KiB in orjson 3.13, even for ``{"data":1}``).
    What is rendered canonically here is mostly kept (event bodies, step outputs, run outputs in
    the run cache), so without the copy every cached run costs kilobytes more than its state.
    """
    return bytes(memoryview(raw))


def canonicalize(raw: bytes | str) -> bytes:
    """Re-render a JSON document canonically."""
    return dumps(orjson.loads(raw))


def _is_plain(value: Any) -> bool:
    """True when orjson's sorted output is already the canonical form."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or (k and max(k) > "\uffff"):
                return False
            if not _is_plain(v):
                return False
        return True
    if t is list or t is tuple:
        return all(_is_plain(v) for v in value)
    # floats, big ints, subclasses, anything exotic
    return False


def _utf16_key(s: str) -> bytes:
    return s.encode("utf-16-be")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(orjson.dumps(value).decode("utf-8"))
    elif isinstance(value, int):
        out.append(str(value) if -_SAFE_INT <= value <= _SAFE_INT else number(float(value)))
    elif isinstance(value, float):
        out.append(number(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for k in sorted(value, key=lambda key: _utf16_key(str(key))):
            if not first:
                out.append(",")
            first = False
            out.append(orjson.dumps(str(k)).decode("utf-8"))
            out.append(":")
            _write(value[k], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def number(x: float) -> str:
    """ECMAScript Number::toString for a finite double."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("NaN and Infinity are not valid JSON numbers")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr gives the shortest round-tripping digits, as ECMAScript requires
    _, digit_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    exponent = int(exponent) + (len(digits) - len(digits.rstrip("0")))
    digits = digits.rstrip("0")
    k = len(digits)
    n = k + exponent  # the decimal point sits n digits from the left of `digits`
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
