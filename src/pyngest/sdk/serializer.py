"""Serializers for outputs declared with ``output_type`` (e.g. pydantic models)."""

from __future__ import annotations

import collections
import threading
from typing import Any, Protocol


class Serializer(Protocol):
    def serialize(self, obj: object, typ: object) -> object:
        """A Python object → JSON-compatible data."""
        ...

    def deserialize(self, obj: object, typ: object) -> object:
        """JSON-compatible data → an object of ``typ``."""
        ...


class PydanticSerializer:
    """Converts with pydantic ``TypeAdapter``s, cached (bounded) per type.

    Adapters are cached because building one per call registers the type in pydantic's global
    state each time, which leaks in long-lived workers.
    """

    def __init__(self, max_cached_types: int = 512) -> None:
        self._adapters: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._max = max_cached_types

    def _adapter(self, typ: object) -> Any:
        import pydantic  # optional dependency: only needed when this serializer is used

        try:
            hash(typ)
            key: Any = typ
        except TypeError:
            key = ("id", id(typ))
        with self._lock:
            entry = self._adapters.get(key)
            if entry is None:
                entry = (pydantic.TypeAdapter(typ), typ)  # type: ignore[arg-type]  # keep typ alive so id() stays unique
                self._adapters[key] = entry
                if len(self._adapters) > self._max:
                    self._adapters.popitem(last=False)
            else:
                self._adapters.move_to_end(key)
            return entry[0]

    def serialize(self, obj: object, typ: object) -> object:
        return self._adapter(typ).dump_python(obj, mode="json")

    def deserialize(self, obj: object, typ: object) -> object:
        return self._adapter(typ).validate_python(obj)
