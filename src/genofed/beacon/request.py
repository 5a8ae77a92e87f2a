"""Beacon v2 requests: the POST body model (also documented in /openapi.json), GET query
parameters mapped onto the same model, and the parsed form the rest of the package uses.

Pagination follows the spec: `skip` counts *pages* of `limit` records, so a page starts at record
`skip * limit`. `limit` is at most :data:`MAX_LIMIT`; `limit: 0` means "up to MAX_LIMIT".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictFloat,
    StrictStr,
    ValidationError,
)

from genofed.beacon.variants import KNOWN_PARAMETERS, MAX_POSITION
from genofed.errors import BeaconRequestError

API_VERSION = "v2.1.1"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 10


class Granularity(StrEnum):
    BOOLEAN = "boolean"
    COUNT = "count"
    RECORD = "record"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def coarsest(cls, values: list[Granularity]) -> Granularity:
        return min(values, key=lambda g: g.rank) if values else cls.BOOLEAN


_RANK = {Granularity.BOOLEAN: 0, Granularity.COUNT: 1, Granularity.RECORD: 2}


def _integral(value: Any) -> Any:
    """A JSON number by its value, as JSON Schema reads it: 20.0 is the integer 20."""
    return int(value) if type(value) is float and value.is_integer() else value


#: Body members typed as the Beacon schemas type them, and as JSON Schema reads those types: a
#: boolean is true or false (not 0, 1 or "yes"), an integer a number without a fraction (20.0
#: too; not "20" or true). Pydantic's lax mode would read all of those.
JsonBool = Annotated[bool, Strict()]
JsonInt = Annotated[int, Strict(), BeforeValidator(_integral)]


class _Open(BaseModel):
    # Unknown members are tolerated (v2.2 additions, implementation extensions).
    model_config = ConfigDict(extra="allow")


class SchemaReference(_Open):
    entityType: str | None = None
    schema_: str | None = Field(default=None, alias="schema")


class RequestMeta(_Open):
    apiVersion: str | None = None
    requestedSchemas: list[SchemaReference] = Field(default_factory=list)


class Pagination(_Open):
    skip: JsonInt = Field(default=0, ge=0, le=1_000_000,
                          description="pages to skip (of `limit`)")
    limit: JsonInt = Field(default=DEFAULT_LIMIT, ge=0, le=MAX_LIMIT,
                       description=f"records per page, at most {MAX_LIMIT}; 0 = {MAX_LIMIT}")


class FilterModel(_Open):
    """An ontology (`id`), alphanumeric (`id`, `operator`, `value`) or custom (`id`) filter."""

    id: str = Field(min_length=1, max_length=256)
    operator: Literal["=", "<", ">", "!", ">=", "<="] | None = None
    value: StrictStr | StrictFloat | None = None
    includeDescendantTerms: JsonBool = True
    similarity: Literal["exact", "high", "medium", "low"] = "exact"
    scope: str | None = None


class QueryModel(_Open):
    requestParameters: dict[str, Any] = Field(default_factory=dict)
    filters: list[FilterModel | str] = Field(default_factory=list, max_length=100)
    includeResultsetResponses: Literal["ALL", "HIT", "MISS", "NONE"] = "HIT"
    pagination: Pagination = Field(default_factory=Pagination)
    requestedGranularity: Granularity = Granularity.BOOLEAN
    testMode: JsonBool = False


class BeaconRequestBody(_Open):
    """The Beacon v2 request body (`beaconRequestBody.json`); `meta` is optional here."""

    meta: RequestMeta = Field(default_factory=RequestMeta)
    query: QueryModel = Field(default_factory=QueryModel)


@dataclass(frozen=True)
class FilterSpec:
    id: str
    operator: str | None = None
    value: str | None = None
    include_descendants: bool = True
    scope: str | None = None

    def __str__(self) -> str:
        if self.operator is None:
            return self.id
        return f"{self.id}{self.operator}{self.value}"


@dataclass
class BeaconQuery:
    """A parsed request, whatever its HTTP form."""

    granularity: Granularity = Granularity.BOOLEAN
    include: str = "HIT"
    skip: int = 0
    limit: int = DEFAULT_LIMIT
    filters: list[FilterSpec] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    test_mode: bool = False
    requested_schemas: list[dict[str, str]] = field(default_factory=list)

    @property
    def offset(self) -> int:
        return self.skip * self.page_size

    @property
    def page_size(self) -> int:
        return self.limit or MAX_LIMIT

    def requested_datasets(self) -> list[str] | None:
        """Dataset ids the query names, in the forms Beacons accept (None: all datasets)."""
        named = [self.parameters[k] for k in ("datasets", "datasetIds")
                 if self.parameters.get(k) is not None]
        if len(named) > 1:
            raise BeaconRequestError("requestParameters: give datasets or datasetIds, not both")
        if not named:
            return None
        raw = named[0]
        if isinstance(raw, str):
            return [r.strip() for r in raw.split(",") if r.strip()]
        if isinstance(raw, list) and all(isinstance(r, str) for r in raw):
            return list(raw)
        if isinstance(raw, dict) and isinstance(raw.get("datasetIds"), list):
            return [str(r) for r in raw["datasetIds"]]
        raise BeaconRequestError("requestParameters.datasets must be a list of dataset ids")

    def summary(self) -> dict[str, Any]:
        """`receivedRequestSummary` (requestParameters are keyed by entity, as the schema's
        `additionalProperties: object` wants)."""
        out: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "requestedSchemas": self.requested_schemas,
            "pagination": {"skip": self.skip, "limit": self.limit},
            "requestedGranularity": self.granularity.value,
            "includeResultsetResponses": self.include,
            "testMode": self.test_mode,
        }
        if self.filters:
            out["filters"] = [str(f) for f in self.filters]
        if self.parameters:
            out["requestParameters"] = {"g_variant": _jsonable(self.parameters)}
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_ALNUM = re.compile(r"^(?P<id>[^<>=!]+?)(?P<op><=|>=|=|<|>|!)(?P<value>.+)$")


def _filter_spec(item: FilterModel | str, default_descendants: bool = True) -> FilterSpec:
    if isinstance(item, str):
        text = item.strip()
        if not text:
            raise BeaconRequestError("filters: an empty filter term was given")
        match = _ALNUM.match(text)
        if match:
            return FilterSpec(match["id"].strip(), match["op"], match["value"].strip())
        return FilterSpec(text, include_descendants=default_descendants)
    if (item.operator is None) != (item.value is None):
        raise BeaconRequestError(f"filter {item.id!r}: an alphanumeric filter needs both "
                                 f"'operator' and 'value'")
    value = None if item.value is None else (
        format(item.value, "g") if isinstance(item.value, float) else str(item.value))
    return FilterSpec(item.id.strip(), item.operator, value, item.includeDescendantTerms,
                      item.scope)


def _validation_message(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) or True)
        problems.append(f"{prefix}{loc}: {err['msg']}")
    return "invalid request: " + "; ".join(problems)


def from_body(body: BeaconRequestBody | None) -> BeaconQuery:
    body = body or BeaconRequestBody()
    query = body.query
    params = query.requestParameters
    filters = [_filter_spec(f) for f in query.filters]
    schemas = [{k: v for k, v in (("entityType", s.entityType), ("schema", s.schema_)) if v}
               for s in body.meta.requestedSchemas]
    return BeaconQuery(
        granularity=query.requestedGranularity,
        include=query.includeResultsetResponses,
        skip=query.pagination.skip,
        limit=query.pagination.limit,
        filters=filters,
        parameters=unwrap_parameters(params),
        test_mode=query.testMode,
        requested_schemas=schemas,
    )


def unwrap_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Accept both flat parameters and the entity-keyed form ({"g_variant": {...}}), each
    parameter given once (null, "" and blank strings give nothing): which of two values would
    be meant is anyone's guess. A JSON number is read by its value (:func:`_integral`)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if key in {"g_variant", "g_variants", "genomicVariation", "genomicVariations"}:
            if not isinstance(value, Mapping):
                raise BeaconRequestError(f"requestParameters.{key} must be an object")
            for name, item in value.items():
                _add(flat, name, item, f"under {key}")
        elif key != "$schema":
            _add(flat, key, value, "at the top")
    return flat


def _add(flat: dict[str, Any], key: str, value: Any, where: str) -> None:
    if value is None or (isinstance(value, str) and (value == "" or value.isspace())):
        flat.setdefault(key, None)  # null, "" and blank give nothing
        return
    if isinstance(value, bool) and key in KNOWN_PARAMETERS:  # Python would read it as 0 or 1
        raise BeaconRequestError(f"requestParameters.{key}: {str(value).lower()} is not a "
                                 f"value of it")
    if flat.get(key) is not None:
        raise BeaconRequestError(f"requestParameters.{key} is given twice (the second {where}); "
                                 f"give each parameter once")
    flat[key] = _integral(value)


def parse_body_json(raw: Any) -> BeaconQuery:
    """Validate a decoded JSON body (used where FastAPI has not validated it already)."""
    if raw is None:
        return from_body(None)
    try:
        return from_body(BeaconRequestBody.model_validate(raw))
    except ValidationError as exc:
        raise BeaconRequestError(_validation_message(exc)) from None


#: GET parameters that are not variant request parameters.
_CONTROL = {"requestedGranularity", "includeResultsetResponses", "skip", "limit", "filters",
            "testMode", "includeDescendantTerms"}


def single_valued(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """GET parameters (as `request.query_params.multi_items()` lists them), each given once:
    which of two values would be meant is anyone's guess, and a client that writes a list as a
    repeated parameter would lose all but one of its items unawares."""
    params = dict(pairs)
    if len(params) != len(pairs):
        counts = Counter(key for key, _value in pairs)
        repeated = ", ".join(sorted(key for key, count in counts.items() if count > 1))
        raise BeaconRequestError(f"{repeated}: given more than once; give each parameter once "
                                 f"(lists such as filters, start and end comma-separated)")
    return params


def from_query_params(params: Mapping[str, str]) -> BeaconQuery:
    """GET form: control parameters plus variant parameters; `filters` is comma-separated
    (ontology ids, or `id<op>value` for alphanumeric filters such as `age>=P40Y`)."""
    descendants = True
    if "includeDescendantTerms" in params:
        descendants = _bool("includeDescendantTerms", params["includeDescendantTerms"])
    raw_filters = [t for t in (params.get("filters") or "").split(",") if t.strip()]
    query: dict[str, Any] = {
        # A blank value gives nothing, as an empty one does (a blank referenceName must not
        # pass for one beside `start`).
        "requestParameters": {k: v for k, v in params.items()
                              if k not in _CONTROL and not v.isspace()},
    }
    for key in ("requestedGranularity", "includeResultsetResponses"):
        if params.get(key):
            query[key] = params[key]
    if "testMode" in params:
        query["testMode"] = _bool("testMode", params["testMode"])
    pagination: dict[str, Any] = {}
    for key in ("skip", "limit"):
        if params.get(key) not in (None, ""):
            pagination[key] = _int(key, params[key])
    query["pagination"] = pagination
    try:
        body = BeaconRequestBody.model_validate({"query": query})
    except ValidationError as exc:
        raise BeaconRequestError(_validation_message(exc)) from None
    parsed = from_body(body)
    parsed.filters = [_filter_spec(t, descendants) for t in raw_filters]
    return parsed


_INCLUDE = {"ALL", "HIT", "MISS", "NONE"}


def sent_summary(params: Mapping[str, str], body: Any = None) -> dict[str, Any]:
    """`receivedRequestSummary` for a request that could not be answered (perhaps not even
    parsed): what the caller sent (GET parameters, or the POST body's `query`) wherever it has
    the type the schema asks for; the default elsewhere."""
    summary = BeaconQuery().summary()
    query = body.get("query") if isinstance(body, Mapping) else None
    if isinstance(query, Mapping):
        sent: dict[str, Any] = dict(query)
        pagination = query.get("pagination")
        if isinstance(pagination, Mapping):
            sent.update({k: pagination[k] for k in ("skip", "limit") if k in pagination})
        filters = query.get("filters")
        if isinstance(filters, list):
            sent["filters"] = [f if isinstance(f, str) else
                               f.get("id") if isinstance(f, Mapping) else None for f in filters]
        parameters = query.get("requestParameters")
    else:
        sent = {key: value for key, value in params.items() if key in _CONTROL}
        for key in ("skip", "limit"):
            text = sent.get(key)
            if isinstance(text, str) and text.strip().isascii() and text.strip().isdigit():
                sent[key] = int(text)
        if isinstance(sent.get("testMode"), str):
            lowered = sent["testMode"].strip().lower()
            sent["testMode"] = {"true": True, "false": False}.get(lowered, sent["testMode"])
        if isinstance(sent.get("filters"), str):
            sent["filters"] = [t.strip() for t in sent["filters"].split(",") if t.strip()]
        parameters = {k: v for k, v in params.items() if k not in _CONTROL}
    # Membership tests on what was sent: only a string can be one (a list is not even hashable).
    granularity = sent.get("requestedGranularity")
    if isinstance(granularity, str) and granularity in {g.value for g in Granularity}:
        summary["requestedGranularity"] = granularity
    include = sent.get("includeResultsetResponses")
    if isinstance(include, str) and include in _INCLUDE:
        summary["includeResultsetResponses"] = include
    for key in ("skip", "limit"):
        value = sent.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            summary["pagination"][key] = value
    if isinstance(sent.get("testMode"), bool):
        summary["testMode"] = sent["testMode"]
    filters = sent.get("filters")
    if isinstance(filters, list) and filters and all(isinstance(f, str) for f in filters):
        summary["filters"] = filters
    if isinstance(parameters, Mapping) and parameters:
        summary["requestParameters"] = {"g_variant": _jsonable(unwrap_lenient(parameters))}
    return summary


def unwrap_lenient(params: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`unwrap_parameters` that keeps what it cannot unwrap instead of refusing it."""
    try:
        return unwrap_parameters(params)
    except BeaconRequestError:
        return dict(params)


def _int(name: str, text: str) -> int:
    """A GET integer: ASCII digits, perhaps signed. Python's int() also reads "1_000", " 5" and
    other scripts' digits, which no Beacon client means as a number."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise BeaconRequestError(f"{name}: {text!r} is not an integer")
    return int(text)


def _bool(name: str, text: str) -> bool:
    lowered = text.lower()  # any case; surrounding spaces are not part of a boolean
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise BeaconRequestError(f"{name}: {text!r} is not a boolean (true/false)")


# -- patterns of parameters ---------------------------------------------------------------------
# ECMA 262 regular expressions (JSON Schema's, and FastAPI's for a path parameter): no inline
# flags, so a case-insensitive word is spelled letter by letter.
def anycase(word: str) -> str:
    """`word` matched case-insensitively: 'chr' -> '[cC][hH][rR]'."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else regex_escape(c)
                   for c in word)


def regex_escape(text: str) -> str:
    return "".join("\\" + c if c in r"\^$.|?*+()[]{}/-" else c for c in text)


def at_most(limit: int, *, least: int = 0) -> str:
    """A regex for the decimal numbers `least`..`limit` (`least` 0 or 1), leading zeros allowed
    (as Python's int() reads them): every shorter number, and per digit position the numbers
    that share `limit`'s leading digits and are smaller at that position."""
    digits = str(limit)
    if len(digits) == 1:
        return f"0*[{least}-{limit}]"
    options = [f"[{least}-9]"]
    if len(digits) > 2:
        options.append(f"[1-9][0-9]{{1,{len(digits) - 2}}}")
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            tail = "[0-9]" + (f"{{{rest}}}" if rest > 1 else "") if rest else ""
            high = int(digit) - 1
            choice = str(low) if high == low else f"[{low}-{high}]"
            options.append(f"{digits[:i]}{choice}{tail}")
    options.append(digits)
    return "0*(?:" + "|".join(options) + ")"


#: The reference sequences every node accepts (:func:`genofed.beacon.variants.reference_name`):
#: 1-22, X, Y, MT (M), with or without `chr`, and their RefSeq accessions.
STANDARD_CONTIG = f"(?:{anycase('chr')})?(?:[1-9]|1[0-9]|2[0-2]|[xXyY]|[mM][tT]?)"
REFSEQ_ACCESSION = f"{anycase('nc_')}0000(?:0[1-9]|1[0-9]|2[0-4])\\.[0-9]+"
#: A variant id, `{assembly}:{contig}:{pos}:{ref}:{alt}`, as
#: :func:`genofed.beacon.variants.parse_variant_id` reads it: fields split at colons (so no
#: `refseq:` before an accession), a 1-based position 1..MAX_POSITION, the alternate allele the
#: rest (colons included). The router checks a path's variant id against it.
VARIANT_ID = (f"^[^:]*:(?:{STANDARD_CONTIG}|{REFSEQ_ACCESSION}):"
              f"{at_most(MAX_POSITION, least=1)}:[^:]+:[\\s\\S]+$")
