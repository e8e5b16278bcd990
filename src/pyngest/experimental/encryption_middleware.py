"""End-to-end encryption of event data, step outputs and function outputs
(FEATURES.md §15.3, ``features__middleware__encryption-middleware``).

Wire format, shared with the official Python and TypeScript encryption middleware so data
encrypted by one decrypts in the others::

    {"__ENCRYPTED__": true, "__STRATEGY__": "inngest/libsodium", "data": "<base64>"}

``data`` is libsodium's secretbox (XSalsa20-Poly1305) of the JSON text, nonce first; a string
key is turned into the 32-byte box key with BLAKE2b (libsodium ``generichash``).

Requires PyNaCl: ``pip install 'pyngest[encryption]'``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

try:
    import nacl.encoding
    import nacl.hash
    import nacl.secret
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the encryption middleware needs PyNaCl: pip install 'pyngest[encryption]'"
    ) from exc

from pyngest.protocol.opcodes import Opcode
from pyngest.sdk.client import Inngest
from pyngest.sdk.function import Function
from pyngest.sdk.memos import StepMemos
from pyngest.sdk.middleware import MiddlewareSync, TransformOutputResult
from pyngest.sdk.types import Event

ENCRYPTION_MARKER = "__ENCRYPTED__"
STRATEGY_MARKER = "__STRATEGY__"
STRATEGY = "inngest/libsodium"
DEFAULT_EVENT_FIELD = "encrypted"


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        return nacl.hash.generichash(
            key.encode("utf-8"), digest_size=nacl.secret.SecretBox.KEY_SIZE, encoder=nacl.encoding.RawEncoder
        )
    return key


def is_encrypted(value: object) -> bool:
    return (
        isinstance(value, dict)
        and value.get(ENCRYPTION_MARKER) is True
        and value.get(STRATEGY_MARKER) == STRATEGY
    )


class EncryptionMiddleware(MiddlewareSync):
    """Encrypts what leaves the app and decrypts what comes back.

    Encrypted: ``event.data[event_encryption_field]`` of sent events (and of invoke payloads),
    every ``step.run`` output and the function's output. The server only sees ciphertext.
    """

    def __init__(
        self,
        client: Inngest,
        raw_request: object,
        secret_key: bytes | str,
        *,
        decrypt_only: bool = False,
        event_encryption_field: str = DEFAULT_EVENT_FIELD,
        fallback_decryption_keys: list[bytes | str] | None = None,
    ) -> None:
        super().__init__(client, raw_request)
        self._box = nacl.secret.SecretBox(_key_bytes(secret_key))
        self._fallbacks = [nacl.secret.SecretBox(_key_bytes(k)) for k in fallback_decryption_keys or []]
        self._decrypt_only = decrypt_only
        self._field = event_encryption_field

    @classmethod
    def factory(
        cls,
        secret_key: bytes | str,
        *,
        decrypt_only: bool = False,
        event_encryption_field: str = DEFAULT_EVENT_FIELD,
        fallback_decryption_keys: list[bytes | str] | None = None,
    ) -> Callable[[Inngest, object], EncryptionMiddleware]:
        """A middleware factory for ``Inngest(middleware=[...])`` or a function's middleware."""

        def make(client: Inngest, raw_request: object) -> EncryptionMiddleware:
            return cls(
                client,
                raw_request,
                secret_key,
                decrypt_only=decrypt_only,
                event_encryption_field=event_encryption_field,
                fallback_decryption_keys=fallback_decryption_keys,
            )

        return make

    # -- primitives ------------------------------------------------------------------------------

    def encrypt(self, data: object) -> dict[str, Any]:
        if is_encrypted(data):
            self.client.logger.warning("Skipping encryption since data is already encrypted")
            return data  # type: ignore[return-value]
        ciphertext = self._box.encrypt(json.dumps(data).encode(), encoder=nacl.encoding.Base64Encoder)
        return {ENCRYPTION_MARKER: True, STRATEGY_MARKER: STRATEGY, "data": ciphertext.decode()}

    def decrypt(self, data: object) -> Any:
        if not is_encrypted(data):
            return data
        assert isinstance(data, dict)
        blob = data.get("data")
        if not isinstance(blob, str):
            return data
        for box in (self._box, *self._fallbacks):
            try:
                return json.loads(box.decrypt(blob.encode(), encoder=nacl.encoding.Base64Encoder).decode())
            except Exception:  # noqa: S112 - wrong key: try the next one
                continue
        raise ValueError("Failed to decrypt data: no key (current or fallback) opens it")

    def _decrypt_event_data(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        if is_encrypted(data):
            # Whole-data encryption; keep unencrypted siblings (e.g. "_inngest" on invokes).
            plain = self.decrypt(data)
            if not isinstance(plain, dict):
                raise ValueError("decrypted event data is not an object")
            rest = {k: v for k, v in data.items() if k not in (ENCRYPTION_MARKER, STRATEGY_MARKER, "data")}
            return {**rest, **plain}
        # The configured field first; another producer may have used a different field.
        for k in sorted(data.keys(), key=lambda k: k != self._field):
            if is_encrypted(data[k]):
                return {**data, k: self.decrypt(data[k])}
        return data

    # -- hooks ---------------------------------------------------------------------------------------

    def before_send_events(self, events: list[Event]) -> None:
        if self._decrypt_only:
            return
        for event in events:
            value = event.data.get(self._field)
            if value is not None:
                event.data = {**event.data, self._field: self.encrypt(value)}

    def transform_input(self, ctx: Any, function: Function[Any], steps: StepMemos) -> None:
        for memo in steps.values():
            memo.data = self.decrypt(memo.data)
        ctx.event.data = self._decrypt_event_data(ctx.event.data)
        for event in ctx.events:
            if event is not ctx.event:
                event.data = self._decrypt_event_data(event.data)

    def transform_output(self, result: TransformOutputResult) -> None:
        if self._decrypt_only:
            return
        if result.has_output():
            result.output = self.encrypt(result.output)
        step = result.step
        if step is not None and step.op is Opcode.INVOKE_FUNCTION and step.opts is not None:
            payload = step.opts.get("payload")
            if isinstance(payload, dict):
                data = payload.get("data")
                if isinstance(data, dict) and self._field in data:
                    payload["data"] = {**data, self._field: self.encrypt(data[self._field])}
