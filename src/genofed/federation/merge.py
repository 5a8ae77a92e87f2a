"""Merging members' Beacon answers into one network answer.

Rules (entry-type queries):

* resultSets are passed through one per dataset, each tagged in its `info.node` with the member's
  id, country and beaconId (dataset ids are kept as they are: the GDI portal relies on them);
* `exists` is the OR of the members' answers;
* `numTotalResults` is the sum of the counts the members *disclosed*. A node that suppressed a
  small count reports it as its floor with `countPrecision: imprecise`; the sum adds that
  reported value and becomes imprecise, so it never reveals what a node hid. When any member
  answered at boolean granularity the network answer is boolean too (no total), as a node does;
* members that failed are not in the total, and `info.network` says which failed and how
  (`complete: false`): a partial total is labelled as one, never passed off as the whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from genofed import __version__
from genofed.beacon.request import API_VERSION, BeaconQuery, Granularity
from genofed.beacon.responses import error_response, returned_schemas
from genofed.federation.client import NodeAnswer, Status
from genofed.federation.network import Network

DISCLOSURE_NOTE = ("numTotalResults adds up the counts each node disclosed; a node's suppressed "
                   "count enters as the value it reported (its floor, countPrecision "
                   "'imprecise'), which makes the total imprecise and never reveals the hidden "
                   "count. Failed nodes are not counted: see network.complete and network.nodes. "
                   "Each node applies its own policy (count floor, exposure budgets), stated in "
                   "each resultSet's info.node.disclosure.")


def informational_meta(network: Network, entity: str | None = None) -> dict[str, Any]:
    return {"beaconId": network.beacon_id, "apiVersion": API_VERSION,
            "returnedSchemas": returned_schemas(entity)}


def response_meta(network: Network, entity: str | None, query: BeaconQuery,
                  granularity: Granularity) -> dict[str, Any]:
    return {**informational_meta(network, entity), "returnedGranularity": granularity.value,
            "receivedRequestSummary": query.summary(), "testMode": query.test_mode}


def error_document(network_beacon_id: str, status: int, message: str,
                   query: BeaconQuery | None = None,
                   info: dict[str, Any] | None = None) -> dict[str, Any]:
    return error_response(network_beacon_id, status, message, query, info=info)


def network_report(network: Network, answers: Sequence[NodeAnswer]) -> dict[str, Any]:
    """`info.network`: every member's status; `complete` when every asked member answered."""
    nodes = []
    for answer in answers:
        line = answer.report()
        if answer.ok and isinstance(answer.document, dict):
            line.update(_summary_of(answer.document))
        nodes.append(line)
    return {"name": network.name, "version": network.version,
            "complete": all(a.status in (Status.OK, Status.SKIPPED) for a in answers),
            "nodes": nodes}


def _summary_of(document: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"beaconId": document.get("meta", {}).get("beaconId")}
    granularity = document.get("meta", {}).get("returnedGranularity")
    if granularity:
        out["returnedGranularity"] = granularity
    summary = document.get("responseSummary")
    if isinstance(summary, dict):
        out["exists"] = summary.get("exists")
        if "numTotalResults" in summary and granularity != "boolean":
            out["numTotalResults"] = summary["numTotalResults"]
            out["countPrecision"] = summary.get("countPrecision", "exact")
    warnings = document.get("info", {}).get("warnings") if isinstance(
        document.get("info"), dict) else None
    if warnings:
        out["warnings"] = warnings
    return out


def failure(answers: Sequence[NodeAnswer]) -> tuple[int, str]:
    """Status and message when no member gave a usable answer."""
    asked = [a for a in answers if a.status is not Status.SKIPPED]
    if not asked:
        return 404, "no member of the network holds the requested dataset(s)"
    detail = "; ".join(f"{a.member.id}: {a.status.value}"
                       + (f" ({a.message})" if a.message else "") for a in asked)
    codes = {a.http_status for a in asked}
    if len(codes) == 1 and all(a.http_status is not None and 400 <= a.http_status < 500
                               for a in asked):
        return asked[0].http_status or 400, f"every member refused the request: {detail}"
    if all(a.status is Status.TIMEOUT for a in asked):
        return 504, f"no member answered in time: {detail}"
    return 502, f"no member gave a usable answer: {detail}"


def _node_tag(answer: NodeAnswer) -> dict[str, Any]:
    tag = {"id": answer.member.id, "country": answer.member.country,
           "beaconId": answer.document["meta"]["beaconId"]}
    policy = (answer.document.get("info") or {}).get("disclosure")
    if isinstance(policy, dict):
        tag["disclosure"] = policy
    return tag


def _tagged(item: dict[str, Any], tag: dict[str, Any]) -> dict[str, Any]:
    return {**item, "info": {**(item.get("info") or {}), "node": tag}}


def _precision(values: Iterable[str]) -> str:
    return "exact" if all(v == "exact" for v in values) else "imprecise"


def result_sets(network: Network, answers: Sequence[NodeAnswer], query: BeaconQuery,
                entity: str) -> dict[str, Any]:
    """The merged answer to an entry-type query (at least one answer is ok)."""
    ok = [a for a in answers if a.ok]
    granularity = Granularity.coarsest([Granularity(a.document["meta"]["returnedGranularity"])
                                        for a in ok])
    sets: list[dict[str, Any]] = []
    handovers: list[Any] = []
    for answer in ok:
        tag = _node_tag(answer)
        sets.extend(_tagged(s, tag) for s in answer.document.get("response", {}).get(
            "resultSets", []))
        handovers.extend(answer.document.get("beaconHandovers", []))
    summary: dict[str, Any] = {"exists": any(a.document["responseSummary"]["exists"]
                                             for a in ok)}
    if granularity is not Granularity.BOOLEAN:
        summaries = [a.document["responseSummary"] for a in ok]
        summary["numTotalResults"] = sum(s["numTotalResults"] for s in summaries)
        summary["countPrecision"] = _precision(s.get("countPrecision", "exact")
                                               for s in summaries)
    return {
        "meta": response_meta(network, entity, query, granularity),
        "responseSummary": summary,
        "response": {"resultSets": sets},
        "info": {"network": network_report(network, answers), "disclosure": DISCLOSURE_NOTE,
                 "pagination": "skip and limit apply within each dataset of each node"},
        "beaconHandovers": handovers,
    }


def collections(network: Network, answers: Sequence[NodeAnswer], query: BeaconQuery,
                entity: str) -> dict[str, Any]:
    """The merged answer to /datasets or /cohorts (at least one answer is ok)."""
    ok = [a for a in answers if a.ok]
    items: list[dict[str, Any]] = []
    for answer in ok:
        tag = _node_tag(answer)
        items.extend(_tagged(c, tag) for c in answer.document["response"]["collections"])
    return {
        "meta": response_meta(network, entity, query, Granularity.RECORD),
        "responseSummary": {
            "exists": any(a.document["responseSummary"]["exists"] for a in ok),
            "numTotalResults": sum(a.document["responseSummary"]["numTotalResults"]
                                   for a in ok)},
        "response": {"collections": items},
        "info": {"network": network_report(network, answers),
                 "pagination": "skip and limit apply within each node"},
    }


def info(network: Network, answers: Sequence[NodeAnswer]) -> dict[str, Any]:
    """/info of the network: its own identity, and each member's as that member gave it."""
    members = []
    for answer in answers:
        entry: dict[str, Any] = {"id": answer.member.id, "country": answer.member.country,
                                 "status": answer.status.value}
        if answer.ok:
            response = answer.document["response"]
            entry.update(beaconId=answer.document["meta"]["beaconId"], name=response["name"])
            if "organization" in response:
                entry["organization"] = response["organization"]
            datasets = (response.get("info") or {}).get("datasets")
            if isinstance(datasets, list):
                entry["datasets"] = datasets
        members.append(entry)
    environments = {a.document["response"].get("environment") for a in answers if a.ok}
    return {
        "meta": informational_meta(network),
        "response": {
            "id": network.beacon_id,
            "name": f"genofed Beacon network {network.name}",
            "apiVersion": API_VERSION,
            "environment": environments.pop() if len(environments) == 1 else "dev",
            "organization": {"id": f"genofed-network-{network.name}",
                             "name": f"genofed network {network.name}",
                             "info": {"countries": sorted({m.country
                                                           for m in network.members})}},
            "version": __version__,
            "createDateTime": network.updated,
            "info": {"members": members},
        },
        "info": {"network": network_report(network, answers)},
    }


def service_info(network: Network, root_url: str) -> dict[str, Any]:
    return {
        "id": network.beacon_id,
        "name": f"genofed Beacon network {network.name}",
        "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
        "description": "GA4GH Beacon v2 network over the members of a genofed network",
        "organization": {"name": f"genofed network {network.name}", "url": root_url},
        "version": __version__,
        "environment": "dev",
    }


def rebase_url(url: str, root: str) -> str:
    """A member's endpoint URL as the same endpoint under the network's root."""
    path = urlsplit(url).path
    index = path.find("/beacon/")
    return root + (path[index + len("/beacon"):] if index >= 0 else path)


def beacon_map(network: Network, answers: Sequence[NodeAnswer], root: str) -> dict[str, Any]:
    """The union of the members' maps, every URL pointing at the network's mirror."""
    sets: dict[str, Any] = {}
    for answer in (a for a in answers if a.ok):
        for entity, endpoint_set in answer.document["response"]["endpointSets"].items():
            if entity in sets:
                continue
            merged = {**endpoint_set, "rootUrl": rebase_url(endpoint_set["rootUrl"], root)}
            if "singleEntryUrl" in endpoint_set:
                merged["singleEntryUrl"] = rebase_url(endpoint_set["singleEntryUrl"], root)
            if "endpoints" in endpoint_set:
                merged["endpoints"] = {k: {**v, "url": rebase_url(v["url"], root)}
                                       for k, v in endpoint_set["endpoints"].items()}
            sets[entity] = merged
    return {"meta": informational_meta(network),
            "response": {"$schema": "beaconMapSchema.json", "endpointSets": sets},
            "info": {"network": network_report(network, answers)}}


def entry_types(network: Network, answers: Sequence[NodeAnswer]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for answer in (a for a in answers if a.ok):
        for key, value in answer.document["response"]["entryTypes"].items():
            merged.setdefault(key, value)
    return {"meta": informational_meta(network), "response": {"entryTypes": merged},
            "info": {"network": network_report(network, answers)}}


def configuration(network: Network, answers: Sequence[NodeAnswer]) -> dict[str, Any]:
    ok = [a for a in answers if a.ok]
    base = {k: v for k, v in ok[0].document["response"].items() if k != "entryTypes"}
    document = entry_types(network, answers)
    document["response"] = {**base, "entryTypes": document["response"]["entryTypes"]}
    return document


def filtering_terms(network: Network, answers: Sequence[NodeAnswer]) -> dict[str, Any]:
    """The union of the members' terms (scopes merged), and of their ontology resources."""
    terms: dict[tuple[str, str], dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}
    for answer in (a for a in answers if a.ok):
        response = answer.document["response"]
        for term in response["filteringTerms"]:
            key = (str(term.get("type", term.get("ftType", ""))), term["id"])
            if key not in terms:
                terms[key] = dict(term)
            elif "scopes" in term:
                known = terms[key].get("scopes", [])
                terms[key]["scopes"] = known + [s for s in term["scopes"] if s not in known]
        for resource in response.get("resources", []):
            resources.setdefault(resource["id"], resource)
    return {"meta": informational_meta(network),
            "response": {"filteringTerms": list(terms.values()),
                         "resources": list(resources.values())},
            "info": {"network": network_report(network, answers)}}
