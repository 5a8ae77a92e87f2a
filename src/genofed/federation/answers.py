"""What a member's answer must look like before the hub relies on it.

Not the full Beacon v2 schemas (the package does not ship them; the tests check merged answers
against them): exactly the structure merging reads, so that a member answering 200 with a body
the merge would misread is reported as `invalid_answer` instead of bending a total. Written out
by hand rather than as JSON Schema because it runs once per member per query (jsonschema took
~0.4 ms an answer; this takes a few microseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

AnswerCheck = Callable[[Any], list[str]]

_GRANULARITIES = ("boolean", "count", "record")
_PRECISIONS = ("exact", "imprecise", "rounded")
_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer"}


class _Problems:
    """Collects problems, each as `path: what is wrong`."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def field(self, parent: dict[str, Any], key: str, kind: type, where: str,
              required: bool = True) -> Any:
        """`parent[key]` when it is of `kind` (bool is not an integer here); else None."""
        path = f"{where}/{key}" if where else key
        if key not in parent:
            if required:
                self.found.append(f"{where or 'document'}: '{key}' is required")
            return None
        value = parent[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.found.append(f"{path}: {value!r:.60} is not {_TYPE_NAMES[kind]}")
            return None
        return value

    def one_of(self, parent: dict[str, Any], key: str, allowed: tuple[str, ...], where: str,
               required: bool = True) -> str | None:
        value = self.field(parent, key, str, where, required)
        if value is not None and value not in allowed:
            self.found.append(f"{where}/{key}: {value!r:.60} is not one of {', '.join(allowed)}")
            return None
        return None if value is None else str(value)

    def count(self, parent: dict[str, Any], key: str, where: str, required: bool) -> None:
        value = self.field(parent, key, int, where, required)
        if value is not None and value < 0:
            self.found.append(f"{where}/{key}: {value} is negative")

    def objects(self, parent: dict[str, Any], key: str, where: str,
                required: bool = True) -> list[dict[str, Any]]:
        """`parent[key]` as a list whose items are all objects (problems for the others)."""
        items = self.field(parent, key, list, where, required) or []
        good = []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                good.append(item)
            else:
                self.found.append(f"{where}/{key}/{index}: not an object")
        return good


def _document(document: Any, problems: _Problems) -> dict[str, Any] | None:
    if not isinstance(document, dict):
        problems.found.append("document: not a JSON object")
        return None
    return document


def _meta(document: dict[str, Any], problems: _Problems, response: bool) -> str | None:
    """Checks `meta`; returns its returnedGranularity (for query responses)."""
    meta = problems.field(document, "meta", dict, "")
    if meta is None:
        return None
    problems.field(meta, "beaconId", str, "meta")
    problems.field(meta, "apiVersion", str, "meta")
    problems.field(meta, "returnedSchemas", list, "meta")
    return problems.one_of(meta, "returnedGranularity", _GRANULARITIES, "meta", response)


def _summary(document: dict[str, Any], problems: _Problems, granularity: str | None) -> None:
    summary = problems.field(document, "responseSummary", dict, "")
    if summary is None:
        return
    problems.field(summary, "exists", bool, "responseSummary")
    # below boolean granularity the summary carries the count the network adds up
    problems.count(summary, "numTotalResults", "responseSummary",
                   granularity in ("count", "record"))
    problems.one_of(summary, "countPrecision", _PRECISIONS, "responseSummary", False)


def check_result_sets(document: Any) -> list[str]:
    """An entry-type query answer (boolean, count or record granularity)."""
    problems = _Problems()
    doc = _document(document, problems)
    if doc is not None:
        _summary(doc, problems, _meta(doc, problems, response=True))
        response = problems.field(doc, "response", dict, "", required=False)
        if response is not None:
            for index, result_set in enumerate(problems.objects(response, "resultSets",
                                                                "response")):
                where = f"response/resultSets/{index}"
                problems.field(result_set, "id", str, where)
                problems.field(result_set, "setType", str, where)
                problems.field(result_set, "exists", bool, where)
                problems.count(result_set, "resultsCount", where, False)
                problems.objects(result_set, "results", where, False)
                problems.one_of(result_set, "countPrecision", _PRECISIONS, where, False)
                problems.field(result_set, "countAdjustedTo", list, where, False)
                problems.field(result_set, "info", dict, where, False)
        problems.field(doc, "info", dict, "", required=False)
        problems.field(doc, "beaconHandovers", list, "", required=False)
    return problems.found[:3]


def check_collections(document: Any) -> list[str]:
    """A /datasets or /cohorts answer."""
    problems = _Problems()
    doc = _document(document, problems)
    if doc is not None:
        _summary(doc, problems, _meta(doc, problems, response=True))
        response = problems.field(doc, "response", dict, "")
        if response is not None:
            for index, item in enumerate(problems.objects(response, "collections", "response")):
                problems.field(item, "id", str, f"response/collections/{index}")
                problems.field(item, "info", dict, f"response/collections/{index}", False)
    return problems.found[:3]


def _informational(document: Any, problems: _Problems) -> dict[str, Any] | None:
    doc = _document(document, problems)
    if doc is None:
        return None
    _meta(doc, problems, response=False)
    response: dict[str, Any] | None = problems.field(doc, "response", dict, "")
    return response


def check_info(document: Any) -> list[str]:
    problems = _Problems()
    response = _informational(document, problems)
    if response is not None:
        problems.field(response, "id", str, "response")
        problems.field(response, "name", str, "response")
        problems.field(response, "environment", str, "response", False)
        problems.field(response, "organization", dict, "response", False)
        problems.field(response, "info", dict, "response", False)
    return problems.found[:3]


def check_map(document: Any) -> list[str]:
    problems = _Problems()
    response = _informational(document, problems)
    if response is not None:
        sets = problems.field(response, "endpointSets", dict, "response") or {}
        for entity, endpoint_set in sets.items():
            where = f"response/endpointSets/{entity}"
            if not isinstance(endpoint_set, dict):
                problems.found.append(f"{where}: not an object")
                continue
            problems.field(endpoint_set, "entryType", str, where)
            problems.field(endpoint_set, "rootUrl", str, where)
            problems.field(endpoint_set, "singleEntryUrl", str, where, False)
            endpoints = problems.field(endpoint_set, "endpoints", dict, where, False) or {}
            for name, endpoint in endpoints.items():
                if not isinstance(endpoint, dict):
                    problems.found.append(f"{where}/endpoints/{name}: not an object")
                else:
                    problems.field(endpoint, "url", str, f"{where}/endpoints/{name}")
    return problems.found[:3]


def check_entry_types(document: Any) -> list[str]:
    """/entry_types and /configuration answers."""
    problems = _Problems()
    response = _informational(document, problems)
    if response is not None:
        types = problems.field(response, "entryTypes", dict, "response") or {}
        problems.found.extend(f"response/entryTypes/{k}: not an object"
                              for k, v in types.items() if not isinstance(v, dict))
    return problems.found[:3]


def check_filtering_terms(document: Any) -> list[str]:
    problems = _Problems()
    response = _informational(document, problems)
    if response is not None:
        for index, term in enumerate(problems.objects(response, "filteringTerms", "response")):
            where = f"response/filteringTerms/{index}"
            problems.field(term, "id", str, where)
            scopes = problems.field(term, "scopes", list, where, False) or []
            if not all(isinstance(s, str) for s in scopes):
                problems.found.append(f"{where}/scopes: not a list of strings")
        for index, resource in enumerate(problems.objects(response, "resources", "response",
                                                          False)):
            problems.field(resource, "id", str, f"response/resources/{index}")
    return problems.found[:3]
