"""A fast, conservative check that a JSON document is a valid Phenopacket v2.

`google.protobuf.json_format.ParseDict` is the authority on what a Phenopacket is, but it is pure
Python and costs most of an ingest's time on phenopackets. This module walks the already decoded
JSON against a table built once from the protobuf descriptors and answers `True` only for
documents ParseDict certainly accepts: the exact JSON shapes of proto3 (a str for a string, an
int in range for an integer, a known enum name or number, an object for a message, an array for a
repeated field, an RFC 3339 string for a Timestamp), no unknown keys, no key given under both its
JSON and its proto name, at most one field of a oneof, no nulls. Anything else (including forms
ParseDict would accept, such as integers as strings, nulls or other well-known types) gives
`False`, meaning "not sure": the caller then asks ParseDict, whose messages are what users see.
"""

from __future__ import annotations

import datetime
import math
import re
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

#: check(value, depth) -> certainly accepted; depth is ParseDict's message nesting depth.
Check = Callable[[object, int], bool]

#: ParseDict refuses messages nested deeper than 100; far below that, we leave it to decide.
MAX_DEPTH = 64

_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?(Z|[+-]\d\d:\d\d)", re.ASCII)


def _unsure(value: object, depth: int) -> bool:
    return False


def _utf8(value: str) -> bool:
    """Whether a str encodes as UTF-8 (no lone surrogates, which ParseDict refuses)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(value: object, depth: int) -> bool:
    return type(value) is str and (value.isascii() or _utf8(value))


def _bool(value: object, depth: int) -> bool:
    return type(value) is bool


def _double(value: object, depth: int) -> bool:
    if type(value) is float:
        return math.isfinite(value)  # JSON's 1e999 decodes to inf, which ParseDict refuses
    return type(value) is int and -(2**63) <= value <= 2**64


def _timestamp(value: object, depth: int) -> bool:
    """An RFC 3339 time that `Timestamp.FromJsonString` accepts, within its range."""
    if type(value) is not str:
        return False
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    if match.group(7) != "Z" and not 1 < year < 9999:  # an offset could leave the range
        return False
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def _integer(low: int, high: int) -> Check:
    def check(value: object, depth: int) -> bool:
        return type(value) is int and low <= value <= high
    return check


def _enum(enum_type: Any) -> Check:
    names = frozenset(value.name for value in enum_type.values)
    numbers = frozenset(value.number for value in enum_type.values)

    def check(value: object, depth: int) -> bool:
        if type(value) is str:
            return value in names
        return type(value) is int and value in numbers
    return check


def _repeated(item: Check) -> Check:
    def check(value: object, depth: int) -> bool:
        if type(value) is not list:
            return False
        for element in value:  # noqa: SIM110 - a loop is faster than all(generator)
            if element is None or not item(element, depth):
                return False
        return True
    return check


def _map(entry: Any) -> Check:
    key_field = entry.fields_by_name["key"]
    value_field = entry.fields_by_name["value"]
    if (key_field.type != FieldDescriptor.TYPE_STRING
            or value_field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE):
        return _unsure
    item = _scalar(value_field)

    def check(value: object, depth: int) -> bool:
        if type(value) is not dict:
            return False
        for key, element in value.items():
            if not _string(key, depth) or element is None or not item(element, depth):
                return False
        return True
    return check


def _scalar(field: Any) -> Check:
    """The check of one value of a field that is not a message."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return _string
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return _bool
    if field.cpp_type == FieldDescriptor.CPPTYPE_DOUBLE:
        return _double
    if field.cpp_type in _INT_RANGES:
        return _integer(*_INT_RANGES[field.cpp_type])
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return _enum(field.enum_type)
    return _unsure  # bytes, float (its range and rounding), anything new


def _is_repeated(field: Any) -> bool:
    try:
        return bool(field.is_repeated)
    except AttributeError:  # protobuf < 5
        return bool(field.label == FieldDescriptor.LABEL_REPEATED)


class MessageSchema:
    """The fields of one message type by JSON and by proto name, and a check of a JSON object."""

    def __init__(self, full_name: str) -> None:
        self.full_name = full_name
        #: key -> (check of the value, the field's other name or None, bit of its oneof or 0)
        self.by_key: dict[str, tuple[Check, str | None, int]] = {}
        # The same, split for speed (filled by `_split`): keys of string fields with one name
        # and no oneof; checks of the other fields with one name and no oneof; the rest.
        strings: set[str] = set()
        plain: dict[str, Check] = {}
        special: dict[str, tuple[Check, str | None, int]] = {}
        self._strings, self._plain, self._special = strings, plain, special

        def check(value: object, depth: int) -> bool:
            """Whether ParseDict certainly accepts `value` as this message at this depth."""
            if type(value) is not dict or depth > MAX_DEPTH:
                return False
            oneofs = 0
            for key, item in value.items():
                if key in strings:
                    if type(item) is not str or not (item.isascii() or _utf8(item)):
                        return False
                    continue
                check = plain.get(key)
                if check is None:
                    entry = special.get(key)
                    if entry is None:
                        return False
                    check, alias, oneof = entry
                    if alias is not None and alias in value:
                        return False
                    if oneof:
                        if oneofs & oneof:
                            return False
                        oneofs |= oneof
                if item is None or not check(item, depth + 1):
                    return False
            return True

        #: A closure rather than a method: the containing messages' checks call it directly.
        self.check: Check = check

    def _split(self) -> None:
        for key, (check, alias, oneof) in self.by_key.items():
            if alias is not None or oneof:
                self._special[key] = (check, alias, oneof)
            elif check is _string:
                self._strings.add(key)
            else:
                self._plain[key] = check


_SCHEMAS: dict[str, MessageSchema] = {}
_BUILDING = threading.Lock()  # a schema half built by another thread would only say "not sure"


def message_schema(descriptor: Any) -> MessageSchema:
    """The schema of a message type and (lazily, once) of every type it contains."""
    schema = _SCHEMAS.get(descriptor.full_name)
    if schema is not None:
        return schema
    schema = MessageSchema(descriptor.full_name)
    _SCHEMAS[descriptor.full_name] = schema  # before the fields: types may contain themselves
    oneof_bits = {oneof.name: 1 << index for index, oneof in enumerate(descriptor.oneofs)}
    ambiguous: set[str] = set()
    for field in descriptor.fields:
        check = _field_check(field)
        oneof = field.containing_oneof
        bit = oneof_bits[oneof.name] if oneof is not None else 0
        json_name, name = field.json_name, field.name
        entries = {json_name: (check, name if name != json_name else None, bit)}
        if name != json_name:
            entries[name] = (check, json_name, bit)
        for key, entry in entries.items():
            if key in schema.by_key:  # one field's JSON name is another's proto name
                ambiguous.add(key)
            schema.by_key[key] = entry
    # ParseDict counts a oneof's name among the keys it has seen: leave such keys to it.
    for key in ambiguous | oneof_bits.keys():
        schema.by_key.pop(key, None)
    schema._split()
    return schema


def _field_check(field: Any) -> Check:
    item: Check
    if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        message_type = field.message_type
        if message_type.GetOptions().map_entry:
            return _map(message_type)
        if message_type.full_name == "google.protobuf.Timestamp":
            item = _timestamp
        elif (message_type.full_name.startswith("google.protobuf.")
              or message_type.file.name.startswith("google/protobuf/")):
            item = _unsure  # wrappers, Struct, Value, Any, Duration, ...: ParseDict's business
        else:
            item = message_schema(message_type).check
    else:
        item = _scalar(field)
    return _repeated(item) if _is_repeated(field) else item


@cache
def _phenopacket_schema() -> MessageSchema:
    from phenopackets import Phenopacket

    with _BUILDING:
        return message_schema(Phenopacket.DESCRIPTOR)


def certainly_valid(document: object) -> bool:
    """True only if `ParseDict(document, Phenopacket())` certainly succeeds."""
    return _phenopacket_schema().check(document, 1)
