"""ULIDs, the ids of events and runs (PROTOCOL.md §1.4).

Our own small encoder: generation sits on the ingest path, and monotonic ids within one
millisecond keep "arrived after" comparisons a plain string comparison.
"""

from __future__ import annotations

import base64
import binascii
import os
import random
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_DECODE.update({c.lower(): i for c, i in list(_DECODE.items())})
_MAX_ENTROPY = (1 << 80) - 1


# Two characters per 10 bits: a 128-bit value (padded to 130 bits) is 13 lookups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = range(120, -1, -10)


def encode(value: int) -> str:
    """128-bit integer → 26-character Crockford base32."""
    pairs = _PAIRS
    return "".join([pairs[(value >> s) & 1023] for s in _SHIFTS])


def from_parts(ms: int, entropy: bytes) -> str:
    return encode((ms << 80) | int.from_bytes(entropy, "big"))


def decode(text: str) -> int:
    if len(text) != 26:
        raise ValueError(f"a ULID has 26 characters, got {len(text)}")
    value = 0
    for c in text:
        try:
            value = (value << 5) | _DECODE[c]
        except KeyError:
            raise ValueError(f"invalid ULID character {c!r}") from None
    if value >> 128:
        raise ValueError("ULID overflows 128 bits")
    return value


def low_bits(text: str) -> int:
    """The 10 lowest bits of a ULID (its last two characters), without decoding the rest."""
    try:
        return (_DECODE[text[24]] << 5) | _DECODE[text[25]]
    except (KeyError, IndexError):
        raise ValueError(f"not a ULID: {text!r}") from None


def timestamp_ms(text: str) -> int:
    return decode(text) >> 80


def is_ulid(text: str) -> bool:
    try:
        decode(text)
    except (ValueError, TypeError):
        return False
    return True


class Generator:
    """Monotonic ULIDs: within one millisecond the entropy increments instead of re-rolling.

    Entropy comes from a PRNG seeded once from the OS: ULIDs need to be unique, not secret, and
    ``os.urandom`` per id cost ~200 µs on some virtual machines.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_entropy = 0
        self._rng = random.Random(os.urandom(32))

    def new(self, ms: int | None = None) -> str:
        if ms is None:
            ms = time.time_ns() // 1_000_000
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                entropy = self._last_entropy + 1
                if entropy > _MAX_ENTROPY:  # practically unreachable; move to the next ms
                    ms += 1
                    entropy = self._rng.getrandbits(79)
            else:
                # 79 bits: headroom so increments within one ms don't overflow
                entropy = self._rng.getrandbits(79)
            self._last_ms = ms
            self._last_entropy = entropy
        return encode((ms << 80) | entropy)


_default = Generator()


def new_ulid(ms: int | None = None) -> str:
    return _default.new(ms)


def seeded_ulid(seed_header: str | None, index: int) -> str | None:
    """The deterministic id for the ``index``-th event (counting from 1) of a seeded request.

    Header format: ``<unix ms>,<base64 of 10 bytes>``. The index is added to the last four
    entropy bytes as a big-endian uint32, wrapping. Returns None when the seed is invalid, in
    which case the caller generates a random id (as upstream does).
    """
    if not seed_header:
        return None
    parts = seed_header.split(",")
    if len(parts) != 2:
        return None
    try:
        millis = int(parts[0])
        entropy = bytearray(base64.b64decode(parts[1], validate=True))
    except (ValueError, binascii.Error):
        return None
    if millis <= 0 or millis >= 1 << 48 or len(entropy) != 10:
        return None
    tail = (int.from_bytes(entropy[6:10], "big") + index) & 0xFFFFFFFF
    entropy[6:10] = tail.to_bytes(4, "big")
    return from_parts(millis, bytes(entropy))


def new_seed(ms: int | None = None) -> str:
    """A fresh ``x-inngest-event-id-seed`` header value (used by our SDK's send)."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    return f"{ms},{base64.b64encode(os.urandom(10)).decode()}"
