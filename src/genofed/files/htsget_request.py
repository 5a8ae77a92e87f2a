"""htsget ticket requests: the GET query or POST body (htsget v1.3 "GET request", "POST
request", plus `encryptionScheme`) -> :class:`TicketRequest`, or the spec's error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from genofed.errors import (
    HtsgetInvalidInput,
    HtsgetInvalidRange,
    HtsgetPayloadTooLarge,
    HtsgetUnsupportedFormat,
)
from genofed.files.search import Region
from genofed.formats.hts import FileFormat

MAX_POST_BYTES = 1 << 20
MAX_REGIONS = 10_000
_UINT32 = 2**32 - 1
FORMATS = {"variants": (FileFormat.VCF, FileFormat.BCF), "reads": (FileFormat.BAM,
                                                                    FileFormat.CRAM)}
_GET_PARAMETERS = {"format", "class", "referenceName", "start", "end", "fields", "tags",
                   "notags", "encryptionScheme"}


@dataclass
class TicketRequest:
    datatype: str
    id: str
    format: FileFormat | None = None
    header_only: bool = False
    regions: list[Region] | None = None
    encrypted: bool = False
    #: The client's Crypt4GH public key (raw 32 bytes) when `encrypted`.
    recipient_key: bytes | None = None

    def describe(self) -> str:
        """For the audit record: what was asked, no personal data."""
        regions = "all" if self.regions is None else ",".join(
            f"{r.reference_name}:{r.start if r.start is not None else ''}-"
            f"{r.end if r.end is not None else ''}" for r in self.regions[:20]) + (
            " ..." if len(self.regions) > 20 else "")
        return (f"{self.datatype}/{self.id} format={self.format or 'default'} "
                f"class={'header' if self.header_only else 'all'} regions={regions} "
                f"encryption={'C4GH' if self.encrypted else 'none'}")


def _format(datatype: str, value: Any) -> FileFormat | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise HtsgetInvalidInput("format must be a string")
    allowed = FORMATS[datatype]
    for file_format in allowed:
        if value.upper() == file_format.value:
            return file_format
    raise HtsgetUnsupportedFormat(f"format {value!r} is not served for {datatype}; use "
                            f"{' or '.join(f.value for f in allowed)}")


def _encryption(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, str) or value.upper() != "C4GH":
        raise HtsgetInvalidInput(f"encryptionScheme {value!r} is not supported; use C4GH")
    return True


def _coordinate(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise HtsgetInvalidInput(f"{name} must be an unsigned 32-bit integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 712.0 is the integer 712
    if isinstance(value, str):
        if not value.isdigit():
            raise HtsgetInvalidInput(f"{name} must be an unsigned 32-bit integer, not {value!r}")
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= _UINT32:
        raise HtsgetInvalidInput(f"{name} must be an unsigned 32-bit integer, not {value!r}")
    return value


def _tags(tags: list[str] | None, notags: list[str] | None) -> None:
    both = set(tags or ()) & set(notags or ())
    if both:
        raise HtsgetInvalidInput(f"tags and notags both name {', '.join(sorted(both))}")


def parse_get(datatype: str, id: str, params: dict[str, str]) -> TicketRequest:
    unknown = sorted(set(params) - _GET_PARAMETERS)
    if unknown:
        raise HtsgetInvalidInput(f"unknown query parameter(s): {', '.join(unknown)}")
    ticket = TicketRequest(datatype, id, _format(datatype, params.get("format")),
                           encrypted=_encryption(params.get("encryptionScheme")))
    klass = params.get("class")
    if klass is not None:
        if klass != "header":
            raise HtsgetInvalidInput(f"class must be 'header', not {klass!r}")
        extra = sorted(set(params) - {"class", "format", "encryptionScheme"})
        if extra:
            raise HtsgetInvalidInput(f"class=header takes no other parameter than format (got "
                               f"{', '.join(extra)})")
        ticket.header_only = True
        return ticket
    _tags(*(params[key].split(",") if params.get(key) else [] for key in ("tags", "notags")))
    reference = params.get("referenceName")
    start = _coordinate("start", params["start"]) if "start" in params else None
    end = _coordinate("end", params["end"]) if "end" in params else None
    if reference is None:
        if start is not None or end is not None:
            raise HtsgetInvalidInput("start and end need a referenceName")
        return ticket
    if not reference:
        raise HtsgetInvalidInput("referenceName is empty")
    if reference == "*" and (start is not None or end is not None):
        raise HtsgetInvalidInput("start and end do not apply to referenceName '*'")
    if start is not None and end is not None and start > end:
        raise HtsgetInvalidRange(f"start ({start}) is greater than end ({end})")
    ticket.regions = [Region(reference, start, end)]
    return ticket


def parse_post(datatype: str, id: str, body: bytes) -> TicketRequest:
    if len(body) > MAX_POST_BYTES:
        raise HtsgetPayloadTooLarge(f"the request body has {len(body)} bytes; at most "
                              f"{MAX_POST_BYTES} are accepted")
    try:
        document = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HtsgetInvalidInput(f"the request body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise HtsgetInvalidInput("the request body must be a JSON object")
    known = {"format", "class", "fields", "tags", "notags", "regions", "encryptionScheme"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise HtsgetInvalidInput(f"unknown field(s) in the request body: {', '.join(unknown)}")
    ticket = TicketRequest(datatype, id, _format(datatype, document.get("format")),
                           encrypted=_encryption(document.get("encryptionScheme")))
    for key in ("fields", "tags", "notags"):
        value = document.get(key)
        if value is not None and (not isinstance(value, list)
                                  or not all(isinstance(v, str) for v in value)):
            raise HtsgetInvalidInput(f"{key} must be an array of strings")
    _tags(document.get("tags"), document.get("notags"))
    klass = document.get("class")
    if klass is not None:
        if klass != "header":
            raise HtsgetInvalidInput(f"class must be 'header', not {klass!r}")
        extra = sorted(set(document) - {"class", "format", "encryptionScheme"})
        if extra:
            raise HtsgetInvalidInput(f"class=header takes no other parameter than format (got "
                               f"{', '.join(extra)})")
        ticket.header_only = True
        return ticket
    if "regions" not in document:
        return ticket
    regions = document["regions"]
    if not isinstance(regions, list) or not regions:
        raise HtsgetInvalidInput("regions must be a non-empty array")
    if len(regions) > MAX_REGIONS:
        raise HtsgetPayloadTooLarge(f"{len(regions)} regions; at most {MAX_REGIONS} per request")
    ticket.regions = []
    for number, region in enumerate(regions):
        where = f"regions[{number}]"
        if not isinstance(region, dict) or not isinstance(region.get("referenceName"), str) \
                or not region["referenceName"]:
            raise HtsgetInvalidInput(f"{where} needs a referenceName")
        extra = sorted(set(region) - {"referenceName", "start", "end"})
        if extra:
            raise HtsgetInvalidInput(f"{where}: unknown field(s) {', '.join(extra)}")
        start = _coordinate(f"{where}.start", region["start"]) if "start" in region else None
        end = _coordinate(f"{where}.end", region["end"]) if "end" in region else None
        if region["referenceName"] == "*" and (start is not None or end is not None):
            raise HtsgetInvalidInput(f"{where}: start and end do not apply to referenceName '*'")
        if start is not None and end is not None and start >= end:
            raise HtsgetInvalidRange(f"{where}: start ({start}) must be less than end ({end})")
        ticket.regions.append(Region(region["referenceName"], start, end))
    return ticket
