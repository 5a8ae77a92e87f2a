"""What the OpenAPI documents of the node and the hub say about Beacon queries: each parameter
typed as the server validates it, so that a request the document calls valid is one the server
accepts, as far as one parameter at a time can say (the rules between parameters are in each
operation's description), and one it calls invalid is one the server refuses.

The server does not read these schemas: GET parameters are parsed once by
:func:`genofed.beacon.request.from_query_params`, variant parameters by
:mod:`genofed.beacon.variants`, filters by :mod:`genofed.beacon.filters`; the patterns below
transcribe those parsers (`tests/beacon/test_openapi_contract.py` holds them to it). They are
written into the document after FastAPI derives it (:func:`describe_beacon_queries`), as
documentation only, so no request pays for validating anything twice. The Beacon router cannot
declare them itself: the serving layer may import the Beacon package, not the other way round.

Three kinds of query read different parameters: entry-type queries all of them; a query scoped
by a variant id (`/g_variants/{id}/...`) no variant parameter but `datasets`; collections
(`/datasets`, `/cohorts`) neither variant parameters nor filters (read, not applied).
"""

from __future__ import annotations

import copy
from typing import Any

from genofed.beacon.filters import AGE_IDS
from genofed.beacon.request import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    REFSEQ_ACCESSION,
    STANDARD_CONTIG,
    VARIANT_ID,
    Granularity,
    anycase,
    at_most,
    regex_escape,
)
from genofed.beacon.variants import _TYPE_CLASSES, MAX_POSITION

Schema = dict[str, Any]

#: The largest `skip` (pages) the request model accepts.
MAX_SKIP = 1_000_000


# -- variant parameters (genofed.beacon.variants) -----------------------------------------------
#: The whitespace Python's str.strip() removes, as the parsers strip text parameters (ECMA's
#: `\s` has no U+001C..U+001F and has U+FEFF): a blank text parameter gives nothing.
_WS_CHARS = ("\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
             "\u3000")
WS = f"[{_WS_CHARS}]"
NOT_WS = f"[^{_WS_CHARS}]"
#: The whitespace int() and float() skip around a number: str.strip()'s but U+001C..U+001F.
NUM_WS = f"[{_WS_CHARS.replace(chr(0x1C) + '-' + chr(0x1F), '')}]"


def text_pattern(core: str) -> str:
    """A text parameter's pattern: `core`, or nothing, between whitespace."""
    return f"^{WS}*(?:{core})?{WS}*$"


#: A reference sequence every node accepts: 1-22, X, Y, MT (M), with or without `chr`, or a
#: RefSeq accession of one (NC_000001.11 .. NC_000024.10), perhaps after `refseq:`. Names of
#: other contigs a node holds are accepted by that node too; they are not part of the contract.
CONTIG = f"(?:{STANDARD_CONTIG}|(?:{anycase('refseq:')})?{REFSEQ_ACCESSION})"
MAX_BASES = 10_000
#: IUPAC bases, `.` and `-` (any case), or a symbolic allele such as `<DEL>`; 10000 at most.
BASES = (f"[ACGTUNRYSWKMBDHVacgtunryswkmbdhv.\\-]{{0,{MAX_BASES}}}"
         f"|<[A-Za-z0-9:_.*\\-]{{1,{MAX_BASES - 2}}}>")

_POSITION: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_POSITION}
_VARIANT_TYPES = sorted(_TYPE_CLASSES)
#: A variant type in any case (the enum lists them as written in the specifications).
_VARIANT_TYPE = "|".join(anycase(t) for t in _VARIANT_TYPES)

#: GET form of the variant parameters: (name, schema, style/explode or None, description).
_VARIANT_GET: list[tuple[str, Schema, bool, str]] = [
    ("referenceName", {"type": "string", "pattern": text_pattern(CONTIG)}, False,
     "Reference sequence: 1-22, X, Y, MT with or without `chr`, or its RefSeq accession "
     "(e.g. 20, chr20, NC_000020.11). Needed by `start` and `end`."),
    ("start", {"type": "array", "items": _POSITION, "minItems": 1, "maxItems": 2}, True,
     "0-based start: one value (sequence or range query: with `end`, smaller than it) or two, "
     "`min,max` (bracket query: with two `end` values). Needs `referenceName`."),
    ("end", {"type": "array", "items": _POSITION, "minItems": 1, "maxItems": 2}, True,
     "0-based exclusive end: as many values as `start`, and only with it; a bracket's "
     "bounds are ordered (`min <= max`)."),
    ("referenceBases", {"type": "string", "pattern": text_pattern(BASES)}, False,
     f"Reference bases (IUPAC; N matches any base), at most {MAX_BASES}"),
    ("alternateBases", {"type": "string", "pattern": text_pattern(BASES)}, False,
     f"Alternate bases (IUPAC; N matches any base), or a symbolic allele such as <DEL>; at "
     f"most {MAX_BASES}"),
    ("variantType", {"type": "string", "pattern": text_pattern(_VARIANT_TYPE)}, False,
     f"Variant class, any case: {', '.join(_VARIANT_TYPES)}"),
    ("assemblyId", {"type": "string"}, False, "Assembly, e.g. GRCh38 (GRCh37 and hg19 too)"),
    ("geneId", {"type": "string"}, False,
     "A gene symbol or id of the gene table given at ingest: variants overlapping it. Not with "
     "`referenceName` or `start`; answered by datasets that have a gene table (400 when none "
     "of the datasets queried has one)."),
    ("variantMinLength", {"type": "integer", "minimum": 0, "maximum": MAX_POSITION}, False,
     "Minimum variant length"),
    ("variantMaxLength", {"type": "integer", "minimum": 0, "maximum": MAX_POSITION}, False,
     "Maximum variant length"),
    ("datasets", {"type": "string"}, False,
     "Comma-separated dataset ids to query (404 names the ones this node does not hold)"),
]

# -- filters (genofed.beacon.request._filter_spec, genofed.beacon.filters) -----------------------
_DIGITS = "[0-9](?:_?[0-9])*"
#: What Python's float() reads (ASCII digits): a decimal, an exponent, inf, infinity or nan.
NUMBER = (f"[+\\-]?(?:(?:{_DIGITS}(?:\\.(?:{_DIGITS})?)?|\\.{_DIGITS})(?:[eE][+\\-]?{_DIGITS})?"
          f"|{anycase('inf')}(?:{anycase('inity')})?|{anycase('nan')})")
_COMPONENT = "[0-9]+(?:\\.[0-9]+)?"
#: An ISO 8601 duration such as P40Y or P3M2D (genofed.store.individuals.iso8601_years).
DURATION = (f"P(?=[0-9T])(?:{_COMPONENT}Y)?(?:{_COMPONENT}M)?(?:{_COMPONENT}W)?"
            f"(?:{_COMPONENT}D)?(?:T(?=[0-9])(?:{_COMPONENT}H)?(?:{_COMPONENT}M)?"
            f"(?:{_COMPONENT}S)?)?")
_AGE = "(?:" + "|".join(regex_escape(i) for i in sorted(AGE_IDS)) + ")"
#: What follows an operator, to the end: a value with no line break, then whitespace (the
#: parser strips the term, then reads `id`, operator and a non-empty value).
_REST = f"[^\\n]*{NOT_WS}{WS}*$"


def _refused_value(valid: str) -> str:
    """An operator and a value not matching `valid`. The parser's operator is the first of
    `<=, >=, =, <, >, !` after which a value follows, so `age<=` reads as `<` and the value "="."""
    value = f"(?!{WS}*(?:{valid}){WS}*$){_REST}"
    return f"(?:(?:<=|>=|<(?!=)|>(?!=)|=|!){value}|[<>]={WS}*$)"


#: Alphanumeric filter terms the server refuses (400): an age whose value is neither a number
#: nor a duration, or a measurement (an id with a CURIE prefix) whose value is not a number.
#: Every other term is accepted; unknown ones are reported in `info.warnings`, not applied.
REFUSED_TERM = (
    f"^{WS}*(?:{_AGE}{WS}*{_refused_value(f'{NUMBER}|{DURATION}')}"
    f"|(?!{_AGE}{WS}*[<>=!])[^{_WS_CHARS}:<>=!][^:<>=!]*:[^<>=!]*{_refused_value(NUMBER)})")
_TERM_DESCRIPTION = (
    "A filtering term: an ontology id (HP:0001250, NCIT:C16576, ...), or `id<op>value` with "
    "op one of = < > <= >= ! — `age` (or NCIT:C25150) with a number of years or an ISO 8601 "
    "duration (P40Y), an assay CURIE (LOINC:2089-1) with a number. Terms this node does not "
    "know are reported in `info.warnings` and not applied.")
FILTER_TERM: Schema = {"type": "string", "pattern": NOT_WS, "not": {"pattern": REFUSED_TERM},
                       "description": _TERM_DESCRIPTION}

#: The rules of an object filter that its model's field types do not say: an operator comes
#: with a value (`_filter_spec`), and the value suits the id (:mod:`genofed.beacon.filters`).
_AGE_ID = f"^{WS}*{_AGE}{WS}*$"
_PREFIXED_ID = f"^{WS}*(?!{regex_escape('NCIT:C25150')}{WS}*$)[^{_WS_CHARS}:][^:]*:"
_ONTOLOGY_FILTER: Schema = {
    "description": "an ontology or custom filter: no operator, no value",
    "properties": {"operator": {"type": "null"}, "value": {"type": "null"}}}
_ALPHANUMERIC_FILTER: Schema = {
    "description": "an alphanumeric filter: an operator and a value",
    "required": ["operator", "value"],
    "properties": {"operator": {"type": "string"}, "value": {"type": ["string", "number"]}}}
_VALUE_SUITS_ID: list[Schema] = [
    {"if": {"required": ["id"], "properties": {"id": {"pattern": _AGE_ID}}},
     "then": {"properties": {"value": {"anyOf": [
         {"type": "number"}, {"type": "string", "pattern": f"^{NUM_WS}*{NUMBER}{NUM_WS}*$"},
         {"type": "string", "pattern": f"^{DURATION}$"}]}}}},
    {"if": {"required": ["id"], "properties": {"id": {"pattern": _PREFIXED_ID}}},
     "then": {"properties": {"value": {"anyOf": [
         {"type": "number"}, {"type": "string", "pattern": f"^{NUM_WS}*{NUMBER}{NUM_WS}*$"}]}}}},
]
FILTER_MODEL_RULES: Schema = {"anyOf": [
    _ONTOLOGY_FILTER, {**_ALPHANUMERIC_FILTER, "allOf": _VALUE_SUITS_ID}]}
#: Where filters are read but not applied (collections), only their form counts.
_FILTER_FORM_RULES: Schema = {"anyOf": [_ONTOLOGY_FILTER, _ALPHANUMERIC_FILTER]}
_NON_BLANK: Schema = {"type": "string", "pattern": NOT_WS,
                      "description": "a filtering term (not applied here)"}


# -- request parameters of a POST body (genofed.beacon.request.unwrap_parameters) ---------------
def _or_absent(*schemas: Schema) -> Schema:
    """A body parameter that may also be null, "" or blank (all read as absent)."""
    return {"anyOf": [*schemas, {"type": "null"}, {"type": "string", "pattern": f"^{WS}*$"}]}


#: A position as text, as int() reads it (surrounding whitespace allowed).
_NUMBER_TEXT = f"{NUM_WS}*{at_most(MAX_POSITION)}{NUM_WS}*"
_POSITIONS_BODY = _or_absent(
    _POSITION,
    {"type": "array", "maxItems": 2, "items": {"anyOf": [
        _POSITION, {"type": "string", "pattern": f"^{_NUMBER_TEXT}$"}]}},
    {"type": "string", "pattern": f"^{_NUMBER_TEXT}(?:,{_NUMBER_TEXT})?$"})
_VARIANT_BODY: dict[str, Schema] = {
    "referenceName": _or_absent({"type": "string", "pattern": text_pattern(CONTIG)},
                                {"type": "integer", "minimum": 1, "maximum": 22}),
    "start": _POSITIONS_BODY,
    "end": _POSITIONS_BODY,
    "referenceBases": _or_absent({"type": "string", "pattern": text_pattern(BASES)}),
    "alternateBases": _or_absent({"type": "string", "pattern": text_pattern(BASES)}),
    "variantType": _or_absent({"type": "string", "pattern": text_pattern(_VARIANT_TYPE)}),
    "assemblyId": _or_absent({"type": "string"}, {"type": "integer"}),
    "geneId": _or_absent({"type": "string"}, {"type": "integer"}),
    "variantMinLength": _POSITIONS_BODY,
    "variantMaxLength": _POSITIONS_BODY,
    "datasets": {"anyOf": [
        {"type": "string", "description": "comma-separated dataset ids"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "required": ["datasetIds"],
         "properties": {"datasetIds": {"type": "array"}}},
        {"type": "null"}]},
    **{name: {"enum": [None, ""], "description": "not supported by this node (400 if given)"}
       for name in ("aminoacidChange", "genomicAlleleShortForm", "allele", "mateName")},
}
_VARIANT_BODY["datasetIds"] = _VARIANT_BODY["datasets"]
#: The names the variant parameters may be grouped under (one pattern, not four properties: the
#: same rules, and a quarter of the cases for a generator to enumerate).
_ENTITY_KEYS = "^(?:g_variants?|genomicVariations?)$"

REQUEST_PARAMETERS: Schema = {
    "type": "object",
    "description": "Variant request parameters, flat or under `g_variant` (or "
                   "`genomicVariations`), each given once (null and \"\" give nothing); the "
                   "same as the GET parameters, in JSON types (an empty list of positions "
                   "gives none). `datasets` and `datasetIds` are one parameter. Parameters this "
                   "node does not know are reported in `info.warnings`.",
    "properties": copy.deepcopy(_VARIANT_BODY),
    "patternProperties": {
        _ENTITY_KEYS: {"type": "object", "properties": copy.deepcopy(_VARIANT_BODY)}},
}
_DATASETS_BODY = {key: _VARIANT_BODY[key] for key in ("datasets", "datasetIds")}
#: A query scoped by a variant id: the id says what the variant parameters would.
VARIANT_ID_REQUEST_PARAMETERS: Schema = {
    "type": "object",
    "description": "Of the request parameters, only `datasets` (or `datasetIds`) applies: the "
                   "variant id in the path names the variant. Each is given once, flat or under "
                   "`g_variant` (null and \"\" give nothing).",
    "properties": copy.deepcopy(_DATASETS_BODY),
    "patternProperties": {
        _ENTITY_KEYS: {"type": "object", "properties": copy.deepcopy(_DATASETS_BODY)}},
}
#: A collection query: no request parameter applies.
COLLECTION_REQUEST_PARAMETERS: Schema = {
    "type": "object",
    "description": "No request parameter applies to collections. Each is given once, flat or "
                   "under `g_variant` (null and \"\" give nothing).",
    "patternProperties": {_ENTITY_KEYS: {"type": "object"}},
}


# -- GET query parameters -----------------------------------------------------------------------
def _parameter(name: str, schema: Schema, description: str, *, array: bool = False,
               empty_is_absent: bool = False) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": False,
                                 "schema": schema, "description": description}
    if array:  # comma-separated, as the Beacon v2 specification serializes them
        parameter.update(style="form", explode=False)
    if empty_is_absent:
        parameter["allowEmptyValue"] = True
    return parameter


_CONTROL_GET: list[dict[str, Any]] = [
    _parameter("requestedGranularity",
               {"type": "string", "enum": [g.value for g in Granularity], "default": "boolean"},
               "The most detailed answer wanted; each dataset answers at most what its access "
               "tier grants the caller", empty_is_absent=True),
    _parameter("includeResultsetResponses",
               {"type": "string", "enum": ["ALL", "HIT", "MISS", "NONE"], "default": "HIT"},
               "Which datasets' resultSets to return", empty_is_absent=True),
    _parameter("skip", {"type": "integer", "minimum": 0, "maximum": MAX_SKIP, "default": 0},
               "Pages to skip (offset = skip * limit)", empty_is_absent=True),
    _parameter("limit",
               {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
               f"Records per page, at most {MAX_LIMIT}; 0 means {MAX_LIMIT}",
               empty_is_absent=True),
    _parameter("filters", {"type": "array", "items": {**FILTER_TERM, "pattern": "^[^,]*$"}},
               "Comma-separated filtering terms. " + _TERM_DESCRIPTION, array=True),
    _parameter("includeDescendantTerms", {"type": "boolean", "default": True},
               "Whether an ontology filter also matches its descendant terms"),
    _parameter("testMode", {"type": "boolean", "default": False}, "Beacon test mode"),
]

#: Every query parameter of a GET entry-type query.
GET_PARAMETERS: list[dict[str, Any]] = [
    *_CONTROL_GET,
    *(_parameter(name, schema, description, array=array, empty_is_absent=True)
      for name, schema, array, description in _VARIANT_GET),
]
#: The query parameters of a GET query scoped by a variant id (`/g_variants/{id}/...`).
VARIANT_ID_GET_PARAMETERS: list[dict[str, Any]] = [
    *_CONTROL_GET,
    *(_parameter(name, schema, description, array=array, empty_is_absent=True)
      for name, schema, array, description in _VARIANT_GET if name == "datasets"),
]
#: The query parameters of a GET collection query (filters are read, not applied).
COLLECTION_GET_PARAMETERS: list[dict[str, Any]] = [
    _parameter("filters", {"type": "array", "items": {"type": "string",
                                                      "pattern": "^[^,]*$"}},
               "Comma-separated filtering terms; not applied to collections", array=True)
    if parameter["name"] == "filters" else parameter
    for parameter in _CONTROL_GET
]


#: What an entry-type query's parameters must agree on, which no parameter's schema can say.
QUERY_RULES = ("Between the variant parameters (GET, or `requestParameters`): `start` and `end` "
               "need `referenceName`; `end` needs `start`, with as many values; a range's "
               "`start` is smaller than its `end`, a bracket's bounds are ordered "
               "(`min <= max`); `geneId` excludes `referenceName` and `start`. A query breaking "
               "one is refused (400).")
VARIANT_ID_NOTE = ("The variant id names the variant: of the variant parameters only `datasets` "
                   "applies.")
COLLECTION_NOTE = "Collections are public metadata: variant parameters and filters do not apply."


# -- the document -------------------------------------------------------------------------------
ENTRY, VARIANT_ID_SCOPED, COLLECTION = "entry", "variant id", "collection"
_FRAMEWORK = {"", "/", "/info", "/service-info", "/map", "/configuration", "/entry_types",
              "/filtering_terms"}
_KINDS: dict[str, tuple[str, list[dict[str, Any]], str]] = {
    # kind: (description, GET parameters, request body component)
    ENTRY: (QUERY_RULES, GET_PARAMETERS, "BeaconRequestBody"),
    VARIANT_ID_SCOPED: (VARIANT_ID_NOTE, VARIANT_ID_GET_PARAMETERS, "VariantIdRequestBody"),
    COLLECTION: (COLLECTION_NOTE, COLLECTION_GET_PARAMETERS, "CollectionRequestBody"),
}
_ID: dict[str, Any] = {"name": "id", "in": "path", "required": True,
                       "schema": {"type": "string"}}
_VARIANT_ID: dict[str, Any] = {
    **_ID, "schema": {"type": "string", "pattern": VARIANT_ID},
    "description": "`assembly:contig:position:ref:alt` (1-based VCF position), "
                   "e.g. GRCh38:20:12345:A:G"}


def query_kind(path: str) -> str | None:
    """What a Beacon path (below /beacon) answers: ENTRY, VARIANT_ID_SCOPED or COLLECTION
    queries, or None (the framework endpoints)."""
    if path in _FRAMEWORK:
        return None
    if path in ("/datasets", "/datasets/{id}", "/cohorts", "/cohorts/{id}"):
        return COLLECTION
    return VARIANT_ID_SCOPED if path.startswith("/g_variants/{id}") else ENTRY


def describe_beacon_queries(document: dict[str, Any], prefix: str) -> None:
    """Write into `document` what the Beacon queries under `prefix` read, by kind: the GET
    parameters, the request body's component (for routes that read their body themselves, as
    the hub's do), the `id` path parameter where FastAPI was not told it, the rules between
    parameters. The components are completed apart (:func:`describe_request_body`)."""
    for path, operations in document.get("paths", {}).items():
        if not path.startswith(prefix + "/"):
            continue
        kind = query_kind(path.removeprefix(prefix))
        if kind is None:
            continue
        description, get_parameters, body = _KINDS[kind]
        for method, operation in operations.items():
            parameters = operation.setdefault("parameters", [])
            if "{id}" in path and not any(p.get("name") == "id" for p in parameters):
                parameters.insert(0, copy.deepcopy(
                    _VARIANT_ID if kind == VARIANT_ID_SCOPED else _ID))
            if method == "get":
                parameters.extend(copy.deepcopy(get_parameters))
            elif method == "post" and "requestBody" not in operation:
                operation["requestBody"] = {"content": {"application/json": {"schema": {
                    "anyOf": [{"$ref": f"#/components/schemas/{body}"}, {"type": "null"}]}}}}
            operation["description"] = description


def describe_request_body(schemas: dict[str, Schema]) -> None:
    """Complete the components FastAPI derives from the request body models with what their
    field types do not say: the request parameters' types and the filter rules, for each kind
    of query (`BeaconRequestBody` for entry-type queries, `VariantIdRequestBody` for queries
    scoped by a variant id, `CollectionRequestBody` for collections)."""
    query, model = schemas.get("QueryModel"), schemas.get("FilterModel")
    if query is None or model is None:
        return
    derived_query, derived_filter = copy.deepcopy(query), copy.deepcopy(model)
    query.update(_query(derived_query, REQUEST_PARAMETERS, None, FILTER_TERM))
    model.update(copy.deepcopy(FILTER_MODEL_RULES))
    scoped = {
        "VariantIdRequestBody": _query(derived_query, VARIANT_ID_REQUEST_PARAMETERS, None,
                                       FILTER_TERM),
        "CollectionRequestBody": _query(derived_query, COLLECTION_REQUEST_PARAMETERS,
                                        {**derived_filter, **_FILTER_FORM_RULES}, _NON_BLANK),
    }
    for name, schema in scoped.items():
        body = schemas.get(name)
        if body is not None:
            body.setdefault("properties", {})["query"] = schema


def _query(derived: Schema, parameters: Schema, filter_model: Schema | None,
           term: Schema) -> Schema:
    """`derived` (QueryModel's component) with these request parameters and filters: object
    filters as `filter_model` (None: the FilterModel component), terms as `term`."""
    query = copy.deepcopy(derived)
    properties = query.setdefault("properties", {})
    properties["requestParameters"] = copy.deepcopy(parameters)
    for branch in properties.get("filters", {}).get("items", {}).get("anyOf", []):
        if branch.get("type") == "string":
            branch.clear()
            branch.update(copy.deepcopy(term))
        elif "$ref" in branch and filter_model is not None:
            branch.clear()
            branch.update(copy.deepcopy(filter_model))
    return query
