import random
import struct

import jcs as reference_jcs  # the library the official Python SDK canonicalizes with
import pytest

from pyngest.protocol import jcs


@pytest.mark.parametrize(
    "value",
    [
        1.0, -0.0, 1e21, 1e-7, 0.1, 123.456, 1e-6, 5e-324, 1.7976931348623157e308,
        2**60, -(2**60), 100.0, 1e20, 0.000001234, -1.5e-10, 12345678901234567890.0,
        {"b": 1.0, "a": [2**60, 1e21, 1e-7, 0.1, -0.0, "é\n\u001f\u2028"], "\U0001f600": 1, "\uff00": 2},
        {"z": None, "y": True, "x": False, "w": "", "v": [], "u": {}},
        "quote \" backslash \\ tab \t",
    ],
)
def test_matches_reference_implementation(value: object) -> None:
    assert jcs.dumps(value) == reference_jcs.canonicalize(value)


def test_random_doubles_match_reference() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        (x,) = struct.unpack("d", rng.randbytes(8))
        if x != x or x in (float("inf"), float("-inf")):
            continue
        assert jcs.dumps(x) == reference_jcs.canonicalize(x)


def test_plain_values_take_the_fast_path_and_sort_keys() -> None:
    assert jcs.dumps({"b": 1, "a": {"d": [1, 2], "c": "x"}}) == b'{"a":{"c":"x","d":[1,2]},"b":1}'


def test_rejects_nan() -> None:
    with pytest.raises(ValueError):
        jcs.dumps(float("nan"))
