"""Schemathesis as a client generator would try an API: every check of the installed version,
every phase (examples, coverage, fuzzing, stateful), against an app's /openapi.json in-process.

What the generator is told beside the document, all of it about requests it would send as valid
(positive) ones; invalid (negative) requests are sent as generated:

* the rules *between* parameters that each operation's description states and a schema cannot
  (`start` needs `referenceName`, a range's start is below its end, htsget's `class=header`
  takes no region, ...): a request breaking one is not sent as a valid one
  (:func:`breaks_documented_rule`);
* which datasets of the node under test have no gene table (data, not contract);
* that a request whose parameters are not what the document allows, as sent, is not valid
  (:func:`_path_follows_document`: links and placeholders the generator fills in itself).

No check's verdict is overridden, and no failure filtered.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from schemathesis.engine import events, from_schema
from schemathesis.generation import GenerationMode

#: Every check of schemathesis 4 (`max_response_time` needs a limit, so it is not one here).
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "positive_data_acceptance",
    "negative_data_rejection", "use_after_free", "ensure_resource_availability",
    "missing_required_header", "ignored_auth", "object_level_authorization",
    "unsupported_method", "allow_header_conformance",
)
PHASES = ("examples", "coverage", "fuzzing", "stateful")


@dataclass
class Failure:
    check: str
    operation: str
    status: int | None
    request: str
    detail: str

    def __str__(self) -> str:
        return (f"{self.check} on {self.operation} (HTTP {self.status}): {self.detail[:300]}\n"
                f"    {self.request[:1000]}")


@dataclass
class Report:
    operations: set[str] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Seconds spent in each phase.
    phases: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [str(f) for f in self.failures[:15]] + self.errors[:10]
        return f"{len(self.failures)} failures, {len(self.errors)} errors:\n" + "\n".join(lines)


def config(max_examples: int, seed: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": seed,
        "cache": {"enabled": False},
        "suppress-health-check": ["all"],
        # Reproducible: the seed, no example database (nothing written beside the tests).
        "generation": {"mode": "all", "max-examples": max_examples, "database": "none"},
        "checks": {name: {"enabled": True} for name in (*CHECKS, "api_error_envelope")},
        "phases": {name: {"enabled": True} for name in PHASES},
    })


def run(app: Any, *, max_examples: int = 20, seed: int = 1,
        without_gene_table: frozenset[str] = frozenset(),
        only: tuple[str, str] | None = None, but: tuple[str, str] | None = None) -> Report:
    """Every check and phase against `app`'s document; the failures and errors found.
    `without_gene_table` names the datasets that cannot answer `geneId` (data the document
    cannot know); `only` and `but` select operations by (method, path)."""
    schema: schemathesis.BaseSchema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=config(max_examples, seed))
    if only:
        schema = schema.include(method=only[0], path=only[1])
    if but:
        schema = schema.exclude(method=but[0], path=but[1])

    def keep(context: Any, case: Any) -> bool:
        return _keep_case(case, without_gene_table)

    schema.hook("filter_case")(keep)
    report = Report()
    started = time.monotonic()
    phase_started = started
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseStarted):
            phase_started = time.monotonic()
        elif isinstance(event, events.PhaseFinished):
            name = str(event.phase.name.value)
            report.phases[name] = report.phases.get(name, 0.0) + time.monotonic() - phase_started
        elif isinstance(event, events.ScenarioFinished):
            report.operations.add(event.recorder.label)
            _collect(event.recorder, report)
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            report.failures.extend(Failure("after_run", f.operation or "", None, "", f.message)
                                   for f in event.failures)
    report.seconds = time.monotonic() - started
    return report


@schemathesis.check
def api_error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error comes in its API's envelope, without a stack trace (what the suite checked
    before it ran every check; the declared error schemas say it too)."""
    if response.status_code < 400 or case.operation.method.upper() == "HEAD":
        return None
    text = response.content.decode("utf-8", "replace")
    assert "Traceback" not in text, "a stack trace in an error answer"
    body = json.loads(text)
    if case.formatted_path.startswith("/htsget"):
        assert set(body.get("htsget", {})) == {"error", "message"}, "not htsget's error"
    else:
        assert body.get("error", {}).get("errorCode") == response.status_code, \
            "not the API's error envelope"
    return None


def _collect(recorder: Any, report: Report) -> None:
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            interaction = recorder.interactions.get(case_id)
            response = interaction.response if interaction else None
            request = interaction.request if interaction else None
            sent = f"{request.method} {request.uri}" if request else ""
            if request is not None and request.body:
                sent += f" body={request.body[:300]!r}"
            text = response.content[:300].decode("utf-8", "replace") if response else ""
            failure = check.failure_info.failure
            report.failures.append(Failure(
                check.name, failure.operation or recorder.label,
                response.status_code if response else None, sent,
                f"{failure.title}: {failure.message} -> {text}"))


# -- the rules between parameters ---------------------------------------------------------------
def _keep_case(case: Any, without_gene_table: frozenset[str]) -> bool:
    meta = case.meta
    if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
        return True
    if not _path_follows_document(case):
        return False
    return not breaks_documented_rule(case.operation.method.upper(), case.operation.path,
                                      dict(case.path_parameters or {}), dict(case.query or {}),
                                      case.body, dict(case.headers or {}), without_gene_table)


def _path_follows_document(case: Any) -> bool:
    """Whether a case's parameters are what the document allows, as sent. The generator calls
    some requests valid that are not: the stateful phase fills path parameters from links it
    infers from earlier answers, such as the Beacon map's URL templates (`/g_variants/{id}`);
    the coverage phase sends placeholder headers ("0"); values drawn for one parameter are
    reused for another of the same name, so a JSON body's `5.0` (an integer, in JSON) reaches a
    query string as the text "5.0" (not one, by the generator's own reading). Such a request
    is no test of the server's acceptance."""
    for parameter in case.operation.iter_parameters():
        location = parameter.location.container_name
        if location not in ("path_parameters", "headers", "query"):
            continue
        schema = parameter.definition.get("schema", {})
        values = getattr(case, location) or {}
        value = next((v for k, v in values.items() if k.lower() == parameter.name.lower()),
                     None)
        items = value if isinstance(value, list) else [value]
        integer = "integer" in (schema.get("type"), schema.get("items", {}).get("type"))
        if integer and any(isinstance(item, float) for item in items):
            return False  # no integer of a URL or header is written "5.0"
        pattern = schema.get("pattern")
        if pattern and isinstance(value, str) and not re.search(pattern, value):
            return False
    return True


def breaks_documented_rule(method: str, path: str, path_parameters: dict[str, Any],
                           query: dict[str, Any], body: Any, headers: Mapping[str, Any],
                           without_gene_table: frozenset[str] = frozenset()) -> bool:
    """Whether a request breaks a rule between parameters that its operation's description
    states (a schema cannot), or asks `geneId` of datasets `without_gene_table` only."""
    for prefix in ("/network/beacon", "/beacon"):
        if path.startswith(prefix + "/"):
            return _beacon_rule_broken(path.removeprefix(prefix), path_parameters, method,
                                       query, body, without_gene_table)
    if path.startswith("/htsget/") and path.endswith("/{id}"):
        if method == "GET":
            return _htsget_get_rule_broken(query, headers)
        return _htsget_post_rule_broken(body, headers)
    return False


_COLLECTIONS = {"/datasets", "/datasets/{id}", "/cohorts", "/cohorts/{id}"}
_WRAPPERS = ("g_variant", "g_variants", "genomicVariation", "genomicVariations")


def _beacon_rule_broken(path: str, path_parameters: dict[str, Any], method: str,
                        query: dict[str, Any], body: Any,
                        without_gene_table: frozenset[str]) -> bool:
    if method == "GET":
        parameters: dict[str, Any] = dict(query)
    else:
        requested = body.get("query") if isinstance(body, dict) else None
        raw = requested.get("requestParameters") if isinstance(requested, dict) else None
        parameters = {}
        pairs = [(k, v) for key, value in (raw or {}).items() for k, v in (
            value.items() if key in _WRAPPERS and isinstance(value, dict) else [(key, value)])]
        for key, value in pairs:
            if _given(value) and _given(parameters.get(key)):
                return True  # each parameter is given once
            if _given(value) or key not in parameters:
                parameters[key] = value
    if path in _COLLECTIONS:
        return False  # no request parameter applies
    if _given(parameters.get("datasets")) and _given(parameters.get("datasetIds")):
        return True  # one parameter, two names
    if path.startswith("/g_variants/{id}"):
        return False  # the variant id says what the variant parameters would
    start, end = _positions(parameters.get("start")), _positions(parameters.get("end"))
    reference = _given(parameters.get("referenceName"))
    gene = _given(parameters.get("geneId"))
    if (start or end) and not reference:
        return True
    if (end and len(end) != len(start)) or (len(start) == 2 and not end):
        return True
    if len(start) == 1 and end and start[0] >= end[0]:
        return True
    if len(start) == 2 and (start[0] > start[1] or end[0] > end[1]):
        return True
    if gene and (reference or start):
        return True
    named = _named_datasets(path, path_parameters, parameters)
    return bool(gene and named and named <= without_gene_table)


def _given(value: Any) -> bool:
    """null, "" and blank strings give nothing (as the parser reads them)."""
    return value is not None and not (isinstance(value, str) and (not value or value.isspace()))


def _positions(value: Any) -> list[int]:
    """Positions as the parser reads them: comma-separated text, a list, or one number."""
    if not _given(value):
        return []
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else \
        value if isinstance(value, list) else [value]
    return [int(item) for item in items]


def _named_datasets(path: str, path_parameters: dict[str, Any],
                    parameters: dict[str, Any]) -> set[str]:
    if path.startswith(("/datasets/{id}", "/cohorts/{id}")):
        return {str(path_parameters.get("id"))}
    raw = parameters.get("datasets", parameters.get("datasetIds"))
    if isinstance(raw, str):
        return {r.strip() for r in raw.split(",") if r.strip()}
    if isinstance(raw, list):
        return {str(r) for r in raw}
    if isinstance(raw, dict) and isinstance(raw.get("datasetIds"), list):
        return {str(r) for r in raw["datasetIds"]}
    return set()


def _needs_key(scheme: Any, headers: Mapping[str, Any]) -> bool:
    """encryptionScheme=C4GH needs the client's key in Htsget-Context-Public-Key."""
    given = {k.lower() for k in headers}
    return isinstance(scheme, str) and scheme.upper() == "C4GH" and \
        "htsget-context-public-key" not in given


def _htsget_get_rule_broken(query: dict[str, Any], headers: Mapping[str, Any]) -> bool:
    if _needs_key(query.get("encryptionScheme"), headers):
        return True
    if "class" in query and set(query) - {"class", "format", "encryptionScheme"}:
        return True
    reference, start, end = (query.get(k) for k in ("referenceName", "start", "end"))
    if (start is not None or end is not None) and (reference is None or reference == "*"):
        return True
    if start is not None and end is not None and int(start) > int(end):
        return True
    tags, notags = (set(str(query[k]).split(",")) if query.get(k) else set()
                    for k in ("tags", "notags"))
    return bool(tags & notags)


def _htsget_post_rule_broken(body: Any, headers: Mapping[str, Any]) -> bool:
    if not isinstance(body, dict):
        return False
    if _needs_key(body.get("encryptionScheme"), headers):
        return True
    if set(body.get("tags") or ()) & set(body.get("notags") or ()):
        return True
    for region in body.get("regions") or ():
        if isinstance(region, dict) and region.get("start") is not None and \
                region.get("end") is not None and region["start"] >= region["end"]:
            return True
    return False
