"""One codec between records (and messages) and the JSON text a database row holds.

Built on one ``cattrs`` converter: ``attrs`` classes become dicts of their fields, enums
their values, tuples lists, datetimes ISO 8601 strings. Every backend that serialises
uses it, so that a row written by one reads back in another; the format is the one
``SqliteStore`` wrote from the start (schema versions 0 and 1 read as they are).
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from typing import Any, Final

import cattrs
from cattrs.fns import identity

from coldmig_fsm import messages
from coldmig_fsm.records import (
    Fault,
    Flavor,
    Host,
    Instance,
    InstanceAction,
    Migration,
    Notification,
    Project,
    RequestRecord,
)
from coldmig_fsm.stores.base import (
    ACTION,
    FAULT,
    FLAVOR,
    HOST,
    INSTANCE,
    MIGRATION,
    NOTIFICATION,
    PROJECT,
    REQUEST,
)

__all__ = ["RECORD_TYPES", "Codec"]

RECORD_TYPES: Final[dict[str, type[Any]]] = {
    HOST: Host,
    FLAVOR: Flavor,
    PROJECT: Project,
    INSTANCE: Instance,
    MIGRATION: Migration,
    ACTION: InstanceAction,
    REQUEST: RequestRecord,
    NOTIFICATION: Notification,
    FAULT: Fault,
}
"""The record class of each kind of row."""


def _is_plain(cls: Any) -> bool:
    """A type whose values JSON writes as they are: a string or integer type (a
    ``StrEnum`` is written as its value), or an optional one."""
    if isinstance(cls, type):
        return issubclass(cls, str | int)
    args = typing.get_args(cls)
    if typing.get_origin(cls) in (typing.Union, types.UnionType) and type(None) in args:
        return all(a is type(None) or _is_plain(a) for a in args)
    return False


def _converter() -> cattrs.Converter:
    # detailed_validation off: a row is read back as it was written, and the records'
    # own validators still run; it makes structuring several times faster.
    converter = cattrs.Converter(detailed_validation=False)
    converter.register_unstructure_hook(dt.datetime, lambda d: d.isoformat())
    converter.register_structure_hook(dt.datetime, lambda v, _: dt.datetime.fromisoformat(v))
    # Identity hooks are inlined by cattrs' generated code: no call per field.
    converter.register_unstructure_hook_factory(_is_plain, lambda _: identity)
    return converter


class Codec:
    """Records and messages to compact JSON text and back."""

    def __init__(self) -> None:
        self._converter = _converter()
        self._encoder = json.JSONEncoder(separators=(",", ":"))

    def dump(self, value: Any) -> str:
        """A record as JSON text."""
        return self._encoder.encode(self._converter.unstructure(value))

    def load(self, kind: str, text: str) -> Any:
        """The record of ``kind`` (one of :data:`RECORD_TYPES`) that ``text`` holds."""
        return self._converter.structure(json.loads(text), RECORD_TYPES[kind])

    def unstructure(self, value: Any) -> Any:
        """A record as JSON-ready data (dicts, lists, strings, numbers)."""
        return self._converter.unstructure(value)

    def dump_message(self, message: messages.Message) -> str:
        """A message as JSON text, its type in the ``kind`` key."""
        data = self._converter.unstructure(message)
        data["kind"] = message.kind
        return self._encoder.encode(data)

    def load_message(self, text: str) -> messages.Message:
        """Inverse of :meth:`dump_message`.

        Raises:
            ValueError: an unknown message kind.
        """
        fields = json.loads(text)
        kind = fields.pop("kind", None)
        cls = messages.KINDS.get(str(kind))
        if cls is None:
            raise ValueError(f"unknown message kind {kind!r}")
        message: messages.Message = self._converter.structure(fields, cls)
        return message
