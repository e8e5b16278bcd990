"""Inngest's custom CEL functions and the one C++ CEL environment every program compiles in.

User-facing functions (PROTOCOL.md §11): ``lowercase``, ``uppercase``, ``b64decode``,
``json_parse``, ``date``, ``now``, ``now_plus``, ``now_minus``. ``now()`` is rewritten to the
``_now`` variable and ``now_plus``/``now_minus`` to internal functions of ``_now``, so the
time comes from the caller's clock on each evaluation, never from the wall clock here.

The environment also adds ``+`` overloads for operand types CEL cannot add (``"a" + 1``):
upstream's runtime turns those into string concatenation, formatting each side as Go's ``%v``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings

from pyngest.expr.syntax import INTERNAL_PREFIX, LIT_VAR, LITS_VAR, NOW_VAR
from pyngest.protocol.durations import DurationError, parse_ms

T = cel.Type

# name -> number of arguments, for a clear message before the C++ checker sees the call.
USER_FUNCTIONS: dict[str, int] = {
    "lowercase": 1,
    "uppercase": 1,
    "b64decode": 1,
    "json_parse": 1,
    "date": 1,
    "now": 0,
    "now_plus": 1,
    "now_minus": 1,
}
NOW_PLUS = INTERNAL_PREFIX + "now_plus"
NOW_MINUS = INTERNAL_PREFIX + "now_minus"


def _lowercase(s: str) -> str:
    return s.lower()


def _uppercase(s: str) -> str:
    return s.upper()


def _b64decode(s: str) -> str:
    # Go's StdEncoding (padding required, newlines ignored). Upstream ignores decode errors;
    # we return "" for input that is not base64 at all.
    try:
        raw = base64.b64decode(s.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.decode("utf-8", errors="replace")


def _json_parse(s: str) -> dict[str, Any]:
    # Upstream unmarshals into a map: anything but a JSON object gives an empty map.
    try:
        value = json.loads(s)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _shift(now: datetime, duration: str, sign: int) -> datetime:
    try:
        ms = parse_ms(duration)
    except DurationError as exc:
        raise ValueError(f"now_plus/now_minus: {exc}") from None
    return now + timedelta(milliseconds=sign * ms)


def _now_plus(now: datetime, duration: str) -> datetime:
    return _shift(now, duration, 1)


def _now_minus(now: datetime, duration: str) -> datetime:
    return _shift(now, duration, -1)


# -- date() ------------------------------------------------------------------------------------
# Upstream's dateutil tries Go layouts in order: RFC3339, "2006-01-02T15:04:05", RFC1123,
# RFC822, RFC822Z, RFC850, RubyDate, UnixDate, ANSIC, Stamp, StampMilli, "2006-01-02".
# Zone abbreviations Go does not know parse as UTC, as Go does for an unknown abbreviation.

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$"
)
_DATE_ONLY = re.compile(r"(\d{4})-(\d{2})-(\d{2})$")
_TEXTUAL = [
    # RFC1123 "Mon, 02 Jan 2006 15:04:05 MST" and RFC1123Z-like numeric zones
    re.compile(r"[A-Za-z]{3}, (?P<d>\d{2}) (?P<mon>[A-Za-z]{3}) (?P<y>\d{4}) "
               r"(?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2}) (?P<z>[A-Za-z]+|[+-]\d{4})$"),
    # RFC822 "02 Jan 06 15:04 MST", RFC822Z "02 Jan 06 15:04 -0700"
    re.compile(r"(?P<d>\d{2}) (?P<mon>[A-Za-z]{3}) (?P<y>\d{2}) (?P<H>\d{2}):(?P<M>\d{2}) "
               r"(?P<z>[A-Za-z]+|[+-]\d{4})$"),
    # RFC850 "Monday, 02-Jan-06 15:04:05 MST"
    re.compile(r"[A-Za-z]+, (?P<d>\d{2})-(?P<mon>[A-Za-z]{3})-(?P<y>\d{2}) "
               r"(?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2}) (?P<z>[A-Za-z]+)$"),
    # RubyDate "Mon Jan 02 15:04:05 -0700 2006"
    re.compile(r"[A-Za-z]{3} (?P<mon>[A-Za-z]{3}) (?P<d>\d{2}) (?P<H>\d{2}):(?P<M>\d{2}):"
               r"(?P<S>\d{2}) (?P<z>[+-]\d{4}) (?P<y>\d{4})$"),
    # UnixDate "Mon Jan _2 15:04:05 MST 2006"
    re.compile(r"[A-Za-z]{3} (?P<mon>[A-Za-z]{3}) +(?P<d>\d{1,2}) (?P<H>\d{2}):(?P<M>\d{2}):"
               r"(?P<S>\d{2}) (?P<z>[A-Za-z]+) (?P<y>\d{4})$"),
    # ANSIC "Mon Jan _2 15:04:05 2006"
    re.compile(r"[A-Za-z]{3} (?P<mon>[A-Za-z]{3}) +(?P<d>\d{1,2}) (?P<H>\d{2}):(?P<M>\d{2}):"
               r"(?P<S>\d{2}) (?P<y>\d{4})$"),
]  # fmt: skip


def _zone(text: str | None) -> timezone:
    if not text or text.isalpha():
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def parse_date_string(s: str) -> datetime:
    m = _RFC3339.match(s)
    if m:
        y, mo, d, h, mi, sec, frac, zone = m.groups()
        micros = int((frac or ".0")[1:7].ljust(6, "0"))
        tz = UTC if zone in (None, "Z", "z") else _zone(zone)
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micros, tzinfo=tz)
    m = _DATE_ONLY.match(s)
    if m:
        return datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
    for pattern in _TEXTUAL:
        t = pattern.match(s)
        if t is None:
            continue
        g = t.groupdict()
        mon = g["mon"].lower()
        if mon not in _MONTHS:
            continue
        year = int(g["y"])
        if len(g["y"]) == 2:
            year += 1900 if year >= 69 else 2000  # Go's two-digit year rule
        return datetime(
            year, _MONTHS.index(mon) + 1, int(g["d"]), int(g["H"]), int(g["M"]),
            int(g.get("S") or 0), tzinfo=_zone(g.get("z")),
        )  # fmt: skip
    raise ValueError(f"date(): unknown date format {s!r}")


def parse_date_int(n: int) -> datetime:
    # Upstream reads seconds, milliseconds or nanoseconds by size, and refuses pre-2000 values.
    if n < 946_684_800:
        raise ValueError(f"date(): {n} is before the year 2000")
    if n < 9_999_999_999:
        return datetime.fromtimestamp(n, UTC)
    if n < 9_999_999_999_999:
        return datetime.fromtimestamp(n / 1000, UTC)
    seconds, nanos = divmod(n, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)


def _date_double(f: float) -> datetime:
    if math.isnan(f) or math.isinf(f):
        raise ValueError("date(): not a finite number")
    return parse_date_int(int(f))


# -- "+" across types --------------------------------------------------------------------------


def go_format(value: object) -> str:
    """A value as Go's ``%v`` prints it (what upstream concatenates for mixed ``+``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(f: float) -> str:
    # %v is strconv's 'g' with the shortest digits: exponent form when the decimal exponent is
    # below -4 or at least 6 (1e+06, 1.234567e+06, 1e-05), exponents with at least two digits.
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits = repr(abs(f))
    mantissa, _, exp_text = digits.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    exp = int(exp_text) if exp_text else 0
    all_digits = (int_part + frac_part).lstrip("0")
    lead_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    point = len(int_part) + exp - lead_zeros  # decimal point position within all_digits
    all_digits = all_digits.rstrip("0") or "0"
    sign = "-" if f < 0 else ""
    e = point - 1
    if e < -4 or e >= 6:
        head, tail = all_digits[0], all_digits[1:]
        body = head + ("." + tail if tail else "")
        return f"{sign}{body}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{all_digits}"
    if point >= len(all_digits):
        return sign + all_digits + "0" * (point - len(all_digits))
    return f"{sign}{all_digits[:point]}.{all_digits[point:]}"


def _concat(a: object, b: object) -> str:
    return go_format(a) + go_format(b)


def _numeric_add(a: float, b: float) -> float:
    return float(a) + float(b)


_SCALARS = {"string": T.STRING, "int": T.INT, "uint": T.UINT, "double": T.DOUBLE, "bool": T.BOOL}
_NUMBERS = ("int", "uint", "double")


def _plus_overloads() -> list[Any]:
    overloads = []
    for left, lt in _SCALARS.items():
        for right, rt in _SCALARS.items():
            if left == right:
                continue  # CEL's own overloads
            if left in _NUMBERS and right in _NUMBERS:
                # Mixed int/uint/double: we add as doubles (upstream concatenates the digits,
                # see docs/compatibility.md).
                impl: Callable[..., object] = _numeric_add
                result = T.DOUBLE
            elif "string" in (left, right):
                impl, result = _concat, T.STRING
            else:
                continue
            overloads.append(
                cel.Overload(f"{INTERNAL_PREFIX}add_{left}_{right}", result, [lt, rt], impl=impl)
            )
    return overloads


def _declarations() -> list[Any]:
    def fn(name: str, *overloads: Any) -> Any:
        return cel.FunctionDecl(name, list(overloads))

    def ov(oid: str, result: Any, params: list[Any], impl: Callable[..., object]) -> Any:
        return cel.Overload(oid, result, params, impl=impl)

    return [
        fn("lowercase", ov("lowercase_string", T.STRING, [T.STRING], _lowercase)),
        fn("uppercase", ov("uppercase_string", T.STRING, [T.STRING], _uppercase)),
        fn("b64decode", ov("b64decode_string", T.STRING, [T.STRING], _b64decode)),
        fn("json_parse", ov("json_parse_string", T.DYN, [T.STRING], _json_parse)),
        fn(
            "date",
            ov("date_string", T.TIMESTAMP, [T.STRING], parse_date_string),
            ov("date_int", T.TIMESTAMP, [T.INT], parse_date_int),
            ov("date_uint", T.TIMESTAMP, [T.UINT], parse_date_int),
            ov("date_double", T.TIMESTAMP, [T.DOUBLE], _date_double),
        ),
        fn(NOW_PLUS, ov(NOW_PLUS + "_ts", T.TIMESTAMP, [T.TIMESTAMP, T.STRING], _now_plus)),
        fn(NOW_MINUS, ov(NOW_MINUS + "_ts", T.TIMESTAMP, [T.TIMESTAMP, T.STRING], _now_minus)),
    ]


def new_environment() -> Any:
    """The CEL environment: ``event``, ``async``, ``vars`` plus the internal ``_lit``/``_now``."""
    dyn_map = T.Map(T.STRING, T.DYN)
    lenient_plus = cel.CelExtension(
        INTERNAL_PREFIX + "lenient", [cel.FunctionDecl("_+_", _plus_overloads())]
    )
    return cel.NewEnv(
        variables={
            "event": dyn_map,
            "async": dyn_map,
            "vars": dyn_map,
            LIT_VAR: dyn_map,
            LITS_VAR: T.List(T.DYN),
            NOW_VAR: T.TIMESTAMP,
        },
        functions=_declarations(),
        # cel.bind lets the rewritten programs evaluate an operand once and test it twice.
        extensions=[ext_bindings.ExtBindings(), lenient_plus],
    )
