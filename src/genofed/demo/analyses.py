"""The demo's federated analyses: the researcher obtains a grant from every country's committee,
then runs a linear GWAS of LDL, a logistic GWAS of bilateral tonic-clonic seizures (both with sex
and age as covariates) and a PCA across the three nodes; the results land in DIR/results/ and
the top hits are set beside the causal variants the simulation planted."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from genofed.analysis.client import HubClient
from genofed.demo.network import NODES, Running

#: Every node's dataset the analyses run over (controlled tier: analyses need a grant).
ANALYSED = {"fi": "fi-biobank", "se": "se-cohort", "nl": "nl-diverse"}
LDL = "LOINC:2089-1"
SEIZURES = "HP:0002069"
JOBS: dict[str, dict[str, Any]] = {
    "LDL cholesterol (linear GWAS)": {
        "type": "gwas-linear", "name": "ldl", "trait": {"measurement": LDL},
        "covariates": ["sex", "age"]},
    "bilateral tonic-clonic seizure (logistic GWAS)": {
        "type": "gwas-logistic", "trait": {"hpo": SEIZURES}, "covariates": ["sex", "age"]},
    "population structure (PCA)": {"type": "pca", "pca": {"components": 5}},
}


class DemoStepError(RuntimeError):
    """A step of the demo did not go as it should (the message says which)."""


def grant_everything(http: httpx.Client, running: Running, token: str,
                     already: set[str]) -> list[str]:
    """The researcher applies to every node's analysed dataset not yet granted, and each
    node's committee member approves; returns the datasets newly granted."""
    granted = []
    for node in NODES:
        dataset = ANALYSED[node.id]
        if dataset in already:
            continue
        url = running.node_urls[node.id]
        application = http.post(f"{url}/access/applications", headers=_bearer(token), json={
            "datasets": [dataset], "duration_days": 90, "purpose": {
                "terms": ["DUO:0000006"],
                "text": "Genetics of LDL cholesterol and seizures across countries"}})
        if application.status_code != 201:
            raise DemoStepError(f"the application to {dataset} failed: {application.text}")
        member = running.issuer.access_token(node.dac_member)
        decision = http.post(f"{url}/access/applications/{application.json()['id']}/decision",
                             headers=_bearer(member),
                             json={"decision": "approve", "note": "federated analysis only"})
        if decision.status_code != 200:
            raise DemoStepError(f"{node.dac_member} could not approve: {decision.text}")
        granted.append(dataset)
    return granted


@dataclass
class Outcome:
    title: str
    job: dict[str, Any]
    files: list[Path]


def run_analyses(running: Running, token: str, results: Path,
                 on_update: Callable[[str, dict[str, Any]], None]) -> list[Outcome]:
    """Submit the demo's jobs one after another and download each one's result files."""
    outcomes = []
    with HubClient(running.hub_url, token) as hub:
        for title, spec in JOBS.items():
            job = hub.submit({**spec, "datasets": sorted(ANALYSED.values())})
            done = hub.wait(job["id"], timeout=3600, on_update=partial(on_update, title))
            files = hub.download(done["id"], results) if done["state"] == "done" else []
            outcomes.append(Outcome(title, done, files))
    return outcomes


@dataclass(frozen=True)
class Hit:
    variant: str
    beta: float
    p: float
    #: The planted causal variant it is, or is near (None: neither).
    planted: str | None


def top_hits(gwas: Path, truth_file: Path, trait: str, count: int = 5,
             window: int = 50_000) -> tuple[list[Hit], list[str]]:
    """The `count` smallest p-values of a GWAS-SSF file, each marked against the planted
    causal variants of `trait` ("quantitative" or "binary" in truth.json); and the planted
    variants themselves, for the reader."""
    truth = json.loads(truth_file.read_text())
    causal = truth["traits"][trait]["causal_variants"]
    planted = [(str(c["chrom"]), int(c["pos"]), f"{c['chrom']}:{c['pos']} {c['ref']}>{c['alt']} "
                f"(effect {float(c['effect']):+.2f})") for c in causal]
    lines = gwas.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    rows = [r for r in rows if r["p_value"] not in ("NA", "")]
    rows.sort(key=lambda r: float(r["p_value"]))
    hits = []
    for row in rows[:count]:
        chrom, pos = row["chromosome"], int(row["base_pair_location"])
        mark = None
        near = [(abs(where - pos), label) for contig, where, label in planted
                if contig.removeprefix("chr") == chrom and abs(where - pos) <= window]
        if near:
            distance, label = min(near)
            mark = ("is " if distance == 0 else f"{distance / 1000:.0f} kb from ") \
                + label.split(" (")[0]
        hits.append(Hit(f"{chrom}:{pos} {row['other_allele']}>{row['effect_allele']}",
                        float(row["beta"]), float(row["p_value"]), mark))
    return hits, [label for _c, _p, label in planted]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
