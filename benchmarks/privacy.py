"""Privacy benchmark: membership inference against a served Beacon, with the count floor alone
and with per-individual exposure budgets, and the utility left for honest users, same run.

    .venv/bin/python benchmarks/privacy.py [--quick] [--budget B] [--public-budget P]
        [--members 300]
        [--nonmembers 150] [--reference 1000] [--sites 20000] [--targets 150]
        [--caller-budget 1000] [--callers 10] [--concurrency 4] [--max-k K]

One simulated CEU population (stdpopsim, built once into benchmarks/work/privacy-*) is cut into
members (the node's dataset, ingested with their phenopackets), non-members and a reference
panel; the attacker reads the latter two, and knows each target's genotypes and sex, the
reference allele frequencies, the number of members and the count floor (`info.disclosure`).
Targets: `--targets` random members and every non-member. Each attacker runs against its own
fresh copy of the node store (`genofed serve --workers 2`), under two policies:
"floor only" (`exposure_budget = 0`) and "exposure budget" (`--budget` and `--public-budget`,
else the node's defaults).

1. anonymous, public dataset, boolean: the Shringarpure & Bustamante LRT knowing the floor, each
   target's alleles asked most informative first (each distinct allele once);
2. colluding registered researchers on the public dataset with `query_budget = --caller-budget`:
   one caller alone is refused (429, its query number is shown), the team shares the queries;
3. a registered caller on a registered-tier copy: individuals counts with and without the
   target's sex filter, an exact LRT on both counts (k = alleles, two requests each; whether
   rare alleles are counted at all is read from the node's `info.disclosure` policy).

Power at 5 % false-positive rate (threshold from the non-members, ties randomised), Wilson 95 %
intervals, after k = 5 .. 10000 alleles per target (at most what a target carries). Utility,
on each attacker's node just before its attack (fresh) and after it, with disjoint random
samples of the dataset's alleles (a node may repeat a remembered answer): the share of anonymous
boolean answers that are truthful (by allele frequency among the members) and that equal the
floor rule (nodes 1 and 2, so both attacks meet the same history), and the share of rare
alleles (AF < 1 %) a registered researcher gets a non-zero count for (node 3). Prints rich
tables and each phase's wall time; writes benchmarks/work/privacy-results.json and
benchmarks/work/privacy-power.png. Starting the six servers costs about a minute of CPU
(imports) whatever the size; a quick run takes about 1.5 minutes on two idle cores.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tomli_w
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from common import free_port, wait_until_up
from privacy_attacks import (
    IMPRECISE,
    BooleanModel,
    CountModel,
    ExactCountModel,
    PowerPoint,
    Target,
    by_dosage,
    levels_for,
    ordered_target,
    reference_frequencies,
    run_levels,
)

WORK = Path(__file__).resolve().parent / "work"
DATASET = "privacy-members"
SEX_FILTER = {"female": "NCIT:C16576", "male": "NCIT:C20197"}
#: A caller who is not the subject of attacker 2 is never stopped by the per-caller budget.
UNLIMITED = 10_000_000
PASSPORT_SECONDS = 6 * 3600
AF_BINS = {"AF >= 5 %": (0.05, 1.01), "AF 1-5 %": (0.01, 0.05), "AF < 1 %": (0.0, 0.01)}
#: Wider than a pipe's default 80 columns, so status lines and tables stay one line each.
console = Console(width=None if sys.stdout.isatty() else 120)


# -- data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    samples: list[str]
    sexes: np.ndarray  # "female" / "male"
    dosage: np.ndarray  # (alleles, people): copies of each alt allele


@dataclass(frozen=True)
class Cohort:
    share: Path  # the members' files: VCF, phenopackets, dataset.json, populations.tsv
    contig: str
    pos: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    members: Panel
    nonmembers: Panel
    reference: Panel
    length_mb: float

    def params(self, allele: int) -> dict[str, str]:
        """Beacon sequence-query parameters of one allele (`start` is 0-based)."""
        return {"referenceName": self.contig, "start": str(int(self.pos[allele]) - 1),
                "referenceBases": str(self.ref[allele]), "alternateBases": str(self.alt[allele])}


def read_share(share: Path) -> tuple[list[tuple[str, int, str, str]], Panel]:
    """Alleles (contig, pos, ref, alt; one per ALT) and the people's dosages and sexes."""
    from cyvcf2 import VCF

    reader = VCF(str(share / "cohort.vcf.gz"))
    alleles, rows = [], []
    for record in reader:
        calls = record.genotype.array()[:, :2]
        for index, alt in enumerate(record.ALT, start=1):
            alleles.append((record.CHROM, record.POS, record.REF, alt))
            rows.append((calls == index).sum(axis=1).astype(np.int8))
    samples = list(reader.samples)
    sexes = [json.loads((share / "phenopackets" / f"{s}.json").read_text())["subject"]["sex"]
             for s in samples]
    return alleles, Panel(samples, np.array([s.lower() for s in sexes]), np.vstack(rows))


def member_sites(vcf: Path, members: int) -> int:
    """Sites of `vcf` where any of the first `members` samples carries an alt allele."""
    from cyvcf2 import VCF

    return sum(bool((r.genotype.array()[:members, :2] > 0).any()) for r in VCF(str(vcf)))


def simulate(args: argparse.Namespace) -> Cohort:
    """Simulate once (a 1 Mb pilot sizes the region for about `--sites` member sites), split into
    members / non-members / reference, and cache the genotypes."""
    from genofed.sim import simulate_cohort
    from genofed.sim.split import Share, split_cohort

    root = WORK / (f"privacy-{args.members}m-{args.nonmembers}n-{args.reference}r-"
                   f"{args.sites}s-seed{args.seed}")
    cache = root / "genotypes.npz"
    total = args.members + args.nonmembers + args.reference
    if not cache.exists():
        console.print(f"Simulating {total} CEU individuals ...")
        pilot = simulate_cohort(root / "pilot", samples=total, seed=args.seed, length_mb=1.0,
                                overwrite=True)
        length = round(args.sites / member_sites(pilot.vcf, args.members), 2)
        shutil.rmtree(root / "pilot")
        pooled = simulate_cohort(root / "pooled", samples=total, seed=args.seed,
                                 length_mb=length, dataset_id="privacy-pool", overwrite=True)
        names = sorted(json.loads(pooled.truth.read_text())["samples"])
        names = [names[i] for i in np.random.default_rng(args.seed).permutation(total)]
        cuts = {DATASET: names[:args.members],
                "privacy-nonmembers": names[args.members:args.members + args.nonmembers],
                "privacy-reference": names[args.members + args.nonmembers:]}
        split_cohort(pooled, root, [Share(name, "public", tuple(samples))
                                    for name, samples in cuts.items()], overwrite=True)
        arrays: dict[str, Any] = {"length_mb": length}
        for name in cuts:
            alleles, panel = read_share(root / name)
            arrays.update({f"{name}.samples": panel.samples, f"{name}.sexes": panel.sexes,
                           f"{name}.dosage": panel.dosage})
        arrays.update(contig=alleles[0][0], pos=[a[1] for a in alleles],
                      ref=[a[2] for a in alleles], alt=[a[3] for a in alleles])
        np.savez_compressed(cache, **arrays)
    data = np.load(cache)

    def load(name: str) -> Panel:
        return Panel(list(data[f"{name}.samples"]), data[f"{name}.sexes"], data[f"{name}.dosage"])

    return Cohort(root / DATASET, str(data["contig"]), data["pos"], data["ref"], data["alt"],
                  load(DATASET), load("privacy-nonmembers"), load("privacy-reference"),
                  float(data["length_mb"]))


# -- nodes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    name: str
    #: None: the node's default (the key is not written).
    exposure_budget: float | None
    #: the share open (boolean) answers may use; None: the node's default
    public_budget: float | None = None


def tag(policy: Policy) -> str:
    """"[policy name]" for console output (escaped: rich reads brackets as markup)."""
    return escape(f"[{policy.name}]")


def base_node(cohort: Cohort, tier: str, *, published: bool = False) -> Path:
    """The members' dataset at `tier` on a node that is never served: runs use copies.
    `published`: the operator publishes its allele frequencies to anyone."""
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset
    from genofed.store.metadata import AccessTier, AlleleFrequencyRelease, load_metadata

    name = f"{tier}-published" if published else tier
    node = cohort.share.parent / f"node-{name}"
    if not (node / "node.toml").exists():
        init_node(node, node_id=f"privacy-{tier}", country="FI")
    metadata = cohort.share.parent / f"dataset-{name}.json"
    original = load_metadata(cohort.share / "dataset.json")
    release = AlleleFrequencyRelease.PUBLIC if published else AlleleFrequencyRelease.WITHHELD
    metadata.write_text(original.model_copy(update={"access_tier": AccessTier(tier),
                                                    "allele_frequencies": release}).to_json())
    ingest_dataset(node, DATASET, cohort.share / "cohort.vcf.gz", metadata=metadata,
                   phenopackets=cohort.share / "phenopackets",
                   populations=cohort.share / "populations.tsv")
    return node


def node_copy(base: Path, name: str, policy: Policy, issuer: Any, query_budget: int) -> Path:
    """A fresh copy of `base` (budgets are node state: no run may see another's spending), its
    node.toml edited as TOML so an unset exposure budget stays unset."""
    from genofed.config.node import load_config

    node = WORK / "privacy-runs" / name
    if node.exists():
        shutil.rmtree(node)
    shutil.copytree(base, node, symlinks=True)  # a dataset's `current` is a symlink
    config = tomllib.loads((node / "node.toml").read_text())
    disclosure = config.setdefault("disclosure", {})
    disclosure["query_budget"] = query_budget
    for key, value in (("exposure_budget", policy.exposure_budget),
                       ("public_exposure_budget", policy.public_budget)):
        disclosure.pop(key, None)
        if value is not None:
            disclosure[key] = value
    iss, jku = issuer.visa_trust
    config.setdefault("access", {}).update(oidc_issuers=[issuer.url],
                                           trusted_visas=[{"iss": iss, "jku": jku}])
    (node / "node.toml").write_text(tomli_w.dumps(config))
    load_config(node)  # the node's own validation, before a server fails on it
    return node


@contextmanager
def served(nodes: dict[str, Path], workers: int) -> Iterator[dict[str, str]]:
    """Serve every node (`genofed serve`) at once, so their start-ups (seconds each, mostly
    imports) overlap; yields each one's base URL."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for name, node in nodes.items():
            port = free_port()
            while any(url.endswith(f":{port}") for url in urls.values()):
                port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "genofed", "serve", str(node), "--port", str(port),
                 "--workers", str(workers), "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, url in urls.items():
            wait_until_up(f"{url}/beacon/info", processes[name], deadline=300)
        yield urls
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def researcher(issuer: Any, user_id: str) -> str:
    """A passport with a ResearcherStatus visa for `user_id` (added to the issuer if new)."""
    from genofed.errors import IssuerConfigError

    try:
        issuer.user(user_id)
    except IssuerConfigError:
        issuer.add_user(user_id, researcher_status=True)
    return str(issuer.passport(user_id, lifetime=PASSPORT_SECONDS))


# -- HTTP ---------------------------------------------------------------------------------------
Request = tuple[str, dict[str, str], str | None]  # entry, parameters, passport


class Beacon:
    """Keep-alive client of one served node sending up to `concurrency` requests at once; counts
    refusals and errors by status."""

    def __init__(self, url: str, concurrency: int, progress: Progress) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=120, limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency))
        self.pool = ThreadPoolExecutor(concurrency)
        self.progress = progress
        self.statuses: Counter[int] = Counter()

    def get(self, request: Request, client: httpx.Client | None = None) -> httpx.Response:
        entry, params, token = request
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = (client or self.client).get(f"/beacon/{entry}", params=params,
                                                headers=headers)
        if response.status_code != 200:
            self.statuses[response.status_code] += 1
        return response

    def many(self, requests: Sequence[Request], label: str) -> list[dict[str, Any] | None]:
        """Bodies of successful answers in request order (None for any other)."""
        task = self.progress.add_task(label, total=len(requests))

        def one(request: Request) -> dict[str, Any] | None:
            response = self.get(request)
            self.progress.advance(task)
            return response.json() if response.status_code == 200 else None

        try:
            return list(self.pool.map(one, requests))
        finally:
            self.progress.remove_task(task)

    def close(self) -> None:
        self.pool.shutdown()
        self.client.close()


def count_code(body: dict[str, Any], floor: int) -> int:
    """An individuals count as the models code it: exact value, 0, or IMPRECISE."""
    sets = body["response"]["resultSets"]
    summary = sets[0] if sets else body["responseSummary"]
    value = int(summary.get("resultsCount", summary.get("numTotalResults", 0)))
    if summary.get("countPrecision") == "imprecise" or 0 < value < floor:
        return IMPRECISE
    return value


def variant_count(cohort: Cohort, allele: int, sex: str | None = None) -> dict[str, str]:
    params = {**cohort.params(allele), "requestedGranularity": "count",
              "includeResultsetResponses": "ALL"}
    return {**params, "filters": SEX_FILTER[sex]} if sex else params


# -- the attacks --------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything one policy's attacks share."""

    args: argparse.Namespace
    cohort: Cohort
    policy: Policy
    issuer: Any
    progress: Progress
    people: list[tuple[str, bool, str, np.ndarray]]  # sample, member, sex, dosage
    f: np.ndarray  # the attacker's reference allele frequencies
    bases: dict[str, Path]  # tier -> base node
    samples: dict[str, dict[str, np.ndarray]]  # before / after -> AF bin -> utility alleles
    results: dict[str, Any] = field(default_factory=dict)

    def report(self, attacker: str) -> Callable[[PowerPoint], None]:
        def line(p: PowerPoint) -> None:
            console.print(f"  {tag(self.policy)} {attacker} k={p.k:>5}: power {p.power:.2f} "
                          f"[{p.low:.2f}, {p.high:.2f}], AUC {p.auc:.2f} (p {p.p_value:.2f}) "
                          f"after {p.queries:,} queries")
        return line


def disclosure(beacon: Beacon, cohort: Cohort) -> dict[str, Any]:
    """`info.disclosure` of a query that matches nothing (so it reveals and spends nothing)."""
    params = {**cohort.params(0), "alternateBases": "N" * 7}
    body = beacon.get(("g_variants", params, None)).json()
    return dict(body["info"]["disclosure"])


def boolean_targets(run: Run, model: BooleanModel) -> list[Target]:
    worth = by_dosage(*(model.expected_llr(run.f, np.full(len(run.f), d)) for d in (1, 2)))
    return [ordered_target(s, m, sex, dosage, worth) for s, m, sex, dosage in run.people]


def boolean_attack(run: Run, model: BooleanModel, attacker: str,
                   ask_alleles: Callable[[list[int], dict[int, bool]], None]) -> list[PowerPoint]:
    """The S&B LRT over yes/no answers; `ask_alleles` fills the answer cache for new alleles."""
    targets = boolean_targets(run, model)
    answers: dict[int, bool] = {}
    asked = 0

    def ask(batch: list[tuple[int, Target]]) -> int:
        nonlocal asked
        todo = list(dict.fromkeys(a for a, _ in batch if a not in answers))
        ask_alleles(todo, answers)
        asked += len(todo)
        return asked

    def score(target: Target, ranks: slice) -> float:
        alleles, dosage = target.alleles[ranks], target.dosage[ranks]
        known = np.array([int(a) in answers for a in alleles], dtype=bool)
        yes = np.array([answers.get(int(a), False) for a in alleles], dtype=bool)
        return float(model.llr(run.f[alleles[known]], dosage[known], yes[known]).sum())

    levels = levels_for(targets, run.args.max_k)
    return run_levels(targets, levels, ask, score, run.report(attacker))


def anonymous_attack(run: Run, beacon: Beacon, model: BooleanModel) -> list[PowerPoint]:
    def ask_alleles(alleles: list[int], answers: dict[int, bool]) -> None:
        bodies = beacon.many([("g_variants", run.cohort.params(a), None) for a in alleles],
                             f"attacker 1, {run.policy.name}")
        answers.update({a: b["responseSummary"]["exists"]
                        for a, b in zip(alleles, bodies, strict=True) if b is not None})

    return boolean_attack(run, model, "attacker 1", ask_alleles)


def published_attack(run: Run, beacon: Beacon) -> list[PowerPoint]:
    """What publishing allele frequencies exposes: each allele's exact count, read from the
    anonymous g_variants record of a dataset whose operator publishes them, in an LRT over the
    target's rarest alleles first."""
    model = ExactCountModel(len(run.cohort.members.samples))
    targets = [ordered_target(s, m, sex, dosage, lambda alleles, _copies: -run.f[alleles])
               for s, m, sex, dosage in run.people]
    counts: dict[int, int] = {}
    asked = 0

    def ask(batch: list[tuple[int, Target]]) -> int:
        nonlocal asked
        todo = list(dict.fromkeys(a for a, _ in batch if a not in counts))
        requests = [("g_variants", {**run.cohort.params(a), "requestedGranularity": "record"},
                     None) for a in todo]
        for allele, body in zip(todo, beacon.many(requests, "attacker 4"), strict=True):
            if body is not None:
                counts[allele] = _published_count(body)
        asked += len(todo)
        return asked

    def score(target: Target, ranks: slice) -> float:
        alleles, dosage = target.alleles[ranks], target.dosage[ranks]
        known = np.array([int(a) in counts for a in alleles], dtype=bool)
        seen = np.array([counts.get(int(a), 0) for a in alleles], dtype=np.int64)
        return float(model.llr(run.f[alleles[known]], dosage[known], seen[known]).sum())

    levels = levels_for(targets, run.args.max_k)
    return run_levels(targets, levels, ask, score, run.report("attacker 4"))


def _published_count(body: dict[str, Any]) -> int:
    """The dataset's allele count in a g_variants record answer (0 when nothing matched)."""
    for result_set in body["response"]["resultSets"]:
        for record in result_set.get("results", []):
            for source in record.get("frequencyInPopulations", []):
                for frequency in source["frequencies"]:
                    if frequency["population"] == "all":
                        return int(frequency["alleleCount"])
    return 0


def colluding_attack(run: Run, beacon: Beacon, model: BooleanModel) -> list[PowerPoint]:
    """One researcher alone on one connection until refused; then a team, round-robin (a 429
    passes the query on to the next researcher)."""
    state: dict[str, Any] = {"refused_at": None, "answered_alone": 0}
    solo_token = researcher(run.issuer, "solo-caller")
    solo = httpx.Client(base_url=beacon.url, timeout=60, limits=httpx.Limits(max_connections=1))
    planned = len({int(a) for t in boolean_targets(run, model)
                   for a in t.alleles[:run.args.max_k or None]})
    size = max(run.args.callers, math.ceil(planned / run.args.caller_budget) + 1)
    team = [researcher(run.issuer, f"researcher-{i:02d}") for i in range(size)]

    def alone(alleles: list[int], answers: dict[int, bool]) -> list[int]:
        for i, allele in enumerate(alleles):
            response = beacon.get(("g_variants", run.cohort.params(allele), solo_token), solo)
            if response.status_code == 429:
                state["refused_at"] = state["answered_alone"] + 1
                state["retry_after"] = response.headers.get("retry-after")
                state["fresh_connections_answered"] = fresh_connections(allele)
                console.print(f"  {tag(run.policy)} attacker 2: one researcher alone refused "
                              f"(429) at query {state['refused_at']:,}")
                return alleles[i:]
            answers[allele] = response.json()["responseSummary"]["exists"]
            state["answered_alone"] += 1
        return []

    def fresh_connections(allele: int) -> int:
        """Whether the refused caller is answered on new connections (another server process
        may keep its own count)."""
        answered = 0
        for _ in range(4):
            with httpx.Client(base_url=beacon.url, timeout=60) as client:
                request = ("g_variants", run.cohort.params(allele), solo_token)
                answered += beacon.get(request, client).status_code == 200
        return answered

    def ask_alleles(alleles: list[int], answers: dict[int, bool]) -> None:
        if state["refused_at"] is None:
            alleles = alone(alleles, answers)
        requests = [("g_variants", run.cohort.params(a), team[(len(answers) + i) % size])
                    for i, a in enumerate(alleles)]
        bodies = beacon.many(requests, f"attacker 2, {run.policy.name}")
        retry = [a for a, b in zip(alleles, bodies, strict=True) if b is None]
        for allele, body in zip(alleles, bodies, strict=True):
            if body is not None:
                answers[allele] = body["responseSummary"]["exists"]
        for attempt, allele in enumerate(retry):  # a refused query goes to another caller
            for turn in range(size):
                token = team[(attempt + turn) % size]
                response = beacon.get(("g_variants", run.cohort.params(allele), token))
                if response.status_code == 200:
                    answers[allele] = response.json()["responseSummary"]["exists"]
                    break

    try:
        points = boolean_attack(run, model, "attacker 2", ask_alleles)
    finally:
        solo.close()
    run.results["collusion"] = {**state, "team": size, "caller_budget": run.args.caller_budget,
                                "planned_queries": planned}
    return points


def rare_alleles_counted(policy: dict[str, Any]) -> bool:
    """Whether registered counts include alleles carried fewer than `floor` times, as the
    node's published `info.disclosure` policy says; before, they took part in no match."""
    return "registered callers see such rare alleles" in str(policy.get("policy", ""))


def count_attack(run: Run, beacon: Beacon, policy: dict[str, Any]) -> list[PowerPoint]:
    """Differencing: counts with the target's sex filter and without, exact LRT on both."""
    token = researcher(run.issuer, "count-attacker")
    floor, hidden = int(policy["countFloor"]), not rare_alleles_counted(policy)
    by_sex = {}
    for sex, term in SEX_FILTER.items():
        body = beacon.get(("individuals", {"filters": term, "requestedGranularity": "count",
                                           "includeResultsetResponses": "ALL"}, token)).json()
        if body["meta"]["returnedGranularity"] != "count":
            raise SystemExit(f"attacker 3 was not given counts: {body['response']}")
        by_sex[sex] = count_code(body, floor)
    n = len(run.cohort.members.samples)
    models = {sex: CountModel(floor, count, n - count, hidden) for sex, count in by_sex.items()}
    worth = {sex: by_dosage(*(model.expected_llr(run.f, np.full(len(run.f), d))
                              for d in (1, 2))) for sex, model in models.items()}
    targets = [ordered_target(s, m, sex, dosage, worth[sex])
               for s, m, sex, dosage in run.people]
    filtered: dict[tuple[int, str], int] = {}
    unfiltered: dict[int, int] = {}

    def ask(batch: list[tuple[int, Target]]) -> int:
        wanted: dict[tuple[int, str | None], None] = {}  # ordered, each query once
        for allele, target in batch:
            if (allele, target.sex) not in filtered:
                wanted[allele, target.sex] = None
            if allele not in unfiltered:
                wanted[allele, None] = None
        keys = list(wanted)
        requests = [("individuals", variant_count(run.cohort, a, sex), token) for a, sex in keys]
        for (allele, sex), body in zip(keys, beacon.many(requests, f"attacker 3, "
                                                         f"{run.policy.name}"), strict=True):
            if body is None:
                continue
            if sex is None:
                unfiltered[allele] = count_code(body, floor)
            else:
                filtered[allele, sex] = count_code(body, floor)
        return len(filtered) + len(unfiltered)

    def score(target: Target, ranks: slice) -> float:
        alleles, dosage = target.alleles[ranks], target.dosage[ranks]
        known = np.array([(int(a), target.sex) in filtered and int(a) in unfiltered
                          for a in alleles], dtype=bool)
        f_obs = np.array([filtered[int(a), target.sex] for a in alleles[known]], dtype=np.int64)
        u_obs = np.array([unfiltered[int(a)] for a in alleles[known]], dtype=np.int64)
        llr = models[target.sex].llr(run.f[alleles[known]], dosage[known], f_obs, u_obs)
        return float(llr.sum())

    run.results["members_by_sex"] = by_sex
    run.results["attacker 3 model"] = "rare alleles hidden" if hidden else "rare alleles counted"
    levels = levels_for(targets, run.args.max_k)
    return run_levels(targets, levels, ask, score, run.report("attacker 3"))


# -- utility ------------------------------------------------------------------------------------
def utility_alleles(cohort: Cohort, size: int, rng: np.random.Generator
                    ) -> dict[str, dict[str, np.ndarray]]:
    """Two disjoint random samples ("before" and "after" the attack) of up to `size` dataset
    alleles per AF bin (AF among the members): a node repeats an answer it gave before, so the
    same alleles asked again after the attack would show nothing of it."""
    ac = cohort.members.dosage.sum(axis=1, dtype=np.int64)
    af = ac / (2 * len(cohort.members.samples))
    samples: dict[str, dict[str, np.ndarray]] = {"before": {}, "after": {}}
    for name, (low, high) in AF_BINS.items():
        pool = rng.permutation(np.flatnonzero((ac > 0) & (af >= low) & (af < high)))
        half = min(size, len(pool) // 2)
        samples["before"][name], samples["after"][name] = pool[:half], pool[half:2 * half]
    return samples


def boolean_utility(run: Run, beacon: Beacon, floor: int, when: str,
                    token: str | None = None) -> dict[str, Any]:
    """Anonymous yes/no for the sampled alleles, the bins shuffled together (under a budget the
    order decides who pays): shares truthful (yes iff anyone carries the allele) and equal to
    the floor rule (yes iff its allele count reaches the floor)."""
    ac = run.cohort.members.dosage.sum(axis=1, dtype=np.int64)
    bins = run.samples[when]
    alleles = np.concatenate(list(bins.values()))
    alleles = alleles[np.random.default_rng(run.args.seed).permutation(len(alleles))]
    bodies = beacon.many([("g_variants", run.cohort.params(a), token) for a in alleles],
                         f"honest boolean queries, {when}")
    said = {int(a): b["responseSummary"]["exists"]
            for a, b in zip(alleles, bodies, strict=True) if b is not None}
    out = {}
    for name, sample in bins.items():
        answered = [int(a) for a in sample if int(a) in said]
        exists = np.array([said[a] for a in answered], dtype=bool)
        out[name] = {"n": len(answered),
                     "truthful": float(np.mean(exists == (ac[answered] > 0))),
                     "floor_rule": float(np.mean(exists == (ac[answered] >= floor)))}
    return out


def rare_count_utility(run: Run, beacon: Beacon, floor: int, when: str) -> dict[str, Any]:
    """A registered researcher's individuals counts for the rare (AF < 1 %) sample: the share
    answered with a non-zero count (exact, or imprecise with countAdjustedTo); and for the
    common (AF >= 5 %) sample, the share answered with the exact number of carriers."""
    token = researcher(run.issuer, "honest-reader")
    rare, common = run.samples[when]["AF < 1 %"], run.samples[when]["AF >= 5 %"]
    alleles = np.concatenate([rare, common])
    bodies = beacon.many([("individuals", variant_count(run.cohort, a), token)
                          for a in alleles], f"honest count queries, {when}")
    codes = {int(a): count_code(b, floor) for a, b in zip(alleles, bodies, strict=True)
             if b is not None}
    carriers = (run.cohort.members.dosage > 0).sum(axis=1)
    rare_codes = [codes[int(a)] for a in rare if int(a) in codes]
    common_exact = [codes[int(a)] == int(carriers[a]) for a in common if int(a) in codes]
    return {"n": len(rare_codes), "nonzero": float(np.mean([c != 0 for c in rare_codes])),
            "common_n": len(common_exact), "common_exact": float(np.mean(common_exact))}


# -- one policy ---------------------------------------------------------------------------------
@contextmanager
def phase(name: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 1)
    console.print(f"[dim]{name}: {timings[name]:.1f} s[/dim]")


#: The nodes of one policy: purpose -> tier, and whether the per-caller query budget is low.
NODES = {"attacker1": ("public", False), "attacker2": ("public", True),
         "attacker3": ("registered", False)}


@contextmanager
def client(run: Run, url: str, purpose: str) -> Iterator[Beacon]:
    """A client of one served node; what it was refused is kept in the results."""
    beacon = Beacon(url, run.args.concurrency, run.progress)
    try:
        yield beacon
    finally:
        beacon.close()
        if beacon.statuses:
            run.results.setdefault("refused", {})[purpose] = dict(beacon.statuses)


def run_policy(run: Run, timings: dict[str, float]) -> None:
    """Each attacker's node sees the same history: honest users' queries (the utility on a
    fresh node), the attack, the honest queries again (the utility after the attack)."""
    n = len(run.cohort.members.samples)
    name = run.policy.name
    slug = name.split(" (")[0].replace(" ", "-")
    with phase(f"{name}: copy the nodes, start {len(NODES)} servers", timings):
        nodes = {purpose: node_copy(run.bases[tier], f"{slug}-{purpose}", run.policy,
                                    run.issuer, run.args.caller_budget if low else UNLIMITED)
                 for purpose, (tier, low) in NODES.items()}
        stack = ExitStack()
        urls = stack.enter_context(served(nodes, run.args.workers))
    with stack:
        with phase(f"{name}: attacker 1 and anonymous utility", timings), \
                client(run, urls["attacker1"], "attacker1") as beacon:
            run.results["disclosure"] = disclosure(beacon, run.cohort)
            floor = int(run.results["disclosure"]["countFloor"])
            run.results["utility_fresh"] = boolean_utility(run, beacon, floor, "before")
            model = BooleanModel(n, floor)
            run.results["attacker 1"] = anonymous_attack(run, beacon, model)
            run.results["utility_after_1"] = boolean_utility(run, beacon, floor, "after")
        with phase(f"{name}: attacker 2", timings), \
                client(run, urls["attacker2"], "attacker2") as beacon:
            # The honest researcher has a per-caller budget of her own here.
            honest = researcher(run.issuer, "honest-reader")
            boolean_utility(run, beacon, floor, "before", honest)
            run.results["attacker 2"] = colluding_attack(run, beacon, model)
        with phase(f"{name}: attacker 3 and registered utility", timings), \
                client(run, urls["attacker3"], "attacker3") as beacon:
            run.results["rare_counts_fresh"] = rare_count_utility(run, beacon, floor, "before")
            run.results["attacker 3"] = count_attack(run, beacon, disclosure(beacon, run.cohort))
            run.results["rare_counts_after_3"] = rare_count_utility(run, beacon, floor, "after")


def make_policies(args: argparse.Namespace) -> tuple[list[Policy], list[str]]:
    """Floor only vs exposure budget (the node's defaults unless `--budget` / `--public-budget`
    say otherwise)."""
    from genofed.config.node import DisclosureSettings

    fields = DisclosureSettings.model_fields
    total = args.budget if args.budget is not None else fields["exposure_budget"].default
    public = (args.public_budget if args.public_budget is not None
              else fields["public_exposure_budget"].default)
    label = f"exposure budget ({total:g}, public {public:g})"
    return [Policy("floor only", 0.0),
            Policy(label, args.budget, args.public_budget)], []


def choose_targets(cohort: Cohort, count: int, rng: np.random.Generator
                   ) -> list[tuple[str, bool, str, np.ndarray]]:
    """`count` random members and every non-member, shuffled together (so under a budget
    neither group is always asked about first)."""
    members, others = cohort.members, cohort.nonmembers
    chosen = rng.choice(len(members.samples), size=count, replace=False)
    people = [(members.samples[i], True, str(members.sexes[i]), members.dosage[:, i])
              for i in chosen]
    people += [(others.samples[i], False, str(others.sexes[i]), others.dosage[:, i])
               for i in range(len(others.samples))]
    return [people[i] for i in rng.permutation(len(people))]


# -- output -------------------------------------------------------------------------------------
ATTACKERS = {
    "attacker 1": "anonymous S&B LRT, public dataset, boolean",
    "attacker 2": "colluding registered researchers, public dataset, boolean",
    "attacker 3": "registered counts with and without the sex filter (k alleles = 2k requests)",
}


def power_tables(runs: Sequence[Run]) -> None:
    for attacker, title in ATTACKERS.items():
        table = Table(title=f"{attacker}: {title} - power at 5 % FPR [95 % CI]; AUC "
                            f"(one-sided Mann-Whitney p: members score higher)")
        table.add_column("k", justify="right")
        for run in runs:
            table.add_column(run.policy.name, justify="right")
        series = [{p.k: p for p in run.results[attacker]} for run in runs]
        for k in sorted({k for points in series for k in points}):
            table.add_row(str(k), *(f"{p[k].power:.2f} [{p[k].low:.2f}, {p[k].high:.2f}]; "
                                    f"{p[k].auc:.2f} ({p[k].p_value:.2f})"
                                    if k in p else "-" for p in series))
        table.add_row("queries", *(f"{run.results[attacker][-1].queries:,}" for run in runs))
        console.print(table)
    for run in runs:
        console.print(collusion_line(run))


def collusion_line(run: Run) -> str:
    done = run.results["collusion"]
    alone = (f"one researcher alone got 429 at query {done['refused_at']:,} (then answers on "
             f"{done['fresh_connections_answered']}/4 new connections)" if done["refused_at"]
             else f"one researcher alone was never refused ({done['answered_alone']:,} queries)")
    return (f"{tag(run.policy)} attacker 2: {alone}; team of {done['team']}, query_budget "
            f"{done['caller_budget']:,}/h each")


def published_table(run: Run) -> None:
    table = Table(title="attacker 4: anonymous LRT on the allele counts a dataset publishes "
                        "(alleleFrequencies: public) - power at 5 % FPR [95 % CI]")
    table.add_column("k", justify="right")
    table.add_column("published frequencies", justify="right")
    for p in run.results["attacker 4"]:
        table.add_row(str(p.k), f"{p.power:.2f} [{p.low:.2f}, {p.high:.2f}]; {p.auc:.2f} "
                                f"({p.p_value:.2f})")
    table.add_row("queries", f"{run.results['attacker 4'][-1].queries:,}")
    console.print(table)


def utility_table(runs: Sequence[Run]) -> None:
    table = Table(title="Utility for honest users: share of answers, fresh node -> after the "
                  "attack")
    table.add_column("answer")
    for run in runs:
        table.add_column(run.policy.name, justify="right")
    fresh_n = runs[0].results["utility_fresh"]
    for name in AF_BINS:
        for key, what in (("truthful", "truthful"), ("floor_rule", "= floor rule")):
            table.add_row(f"anonymous boolean, {name} (n={fresh_n[name]['n']}): {what}",
                          *(f"{r.results['utility_fresh'][name][key]:.2f} -> "
                            f"{r.results['utility_after_1'][name][key]:.2f}" for r in runs))
    rare_n = runs[0].results["rare_counts_fresh"]["n"]
    table.add_row(f"registered count, AF < 1 % (n={rare_n}): non-zero",
                  *(f"{r.results['rare_counts_fresh']['nonzero']:.2f} -> "
                    f"{r.results['rare_counts_after_3']['nonzero']:.2f}" for r in runs))
    common_n = runs[0].results["rare_counts_fresh"]["common_n"]
    table.add_row(f"registered count, AF >= 5 % (n={common_n}): exact",
                  *(f"{r.results['rare_counts_fresh']['common_exact']:.2f} -> "
                    f"{r.results['rare_counts_after_3']['common_exact']:.2f}" for r in runs))
    console.print(table)
    console.print("fresh: on attacker 1's node (boolean) and attacker 3's (counts) before the "
                  "attack; after: a second, disjoint sample of the same bin after it")


def plot(runs: Sequence[Run], published: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ATTACKERS), figsize=(16, 4.8), sharey=True)
    for axis, (attacker, title) in zip(axes, ATTACKERS.items(), strict=True):
        for run in runs:
            points = run.results[attacker]
            ks = [p.k for p in points]
            axis.plot(ks, [p.power for p in points], marker="o", label=run.policy.name)
            axis.fill_between(ks, [p.low for p in points], [p.high for p in points], alpha=0.2)
        if attacker == "attacker 1":  # the same question, answered with frequencies
            points = published.results["attacker 4"]
            axis.plot([p.k for p in points], [p.power for p in points], marker="s",
                      color="black", label="published frequencies (attacker 4)")
        axis.axhline(0.05, linestyle="--", color="grey", linewidth=1)
        axis.set(xscale="log", xlabel="alleles asked per target (k)", ylim=(0, 1.02),
                 title=f"{attacker}\n{title}")
        axis.title.set_fontsize(9)
    axes[0].set_ylabel("power at 5 % false-positive rate")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save(path: Path, args: argparse.Namespace, cohort: Cohort, runs: Sequence[Run],
         notes: list[str], timings: dict[str, float]) -> None:
    members = cohort.members
    document = {
        "settings": vars(args),
        "cohort": {"members": len(members.samples), "nonmembers": len(cohort.nonmembers.samples),
                   "reference": len(cohort.reference.samples), "length_mb": cohort.length_mb,
                   "member_sites": len(np.unique(cohort.pos[members.dosage.any(axis=1)])),
                   "member_alleles": int(members.dosage.any(axis=1).sum()),
                   "females": int((members.sexes == "female").sum())},
        "notes": notes,
        "policies": {run.policy.name: {"exposure_budget": run.policy.exposure_budget,
                                       **run.results} for run in runs},
        "timings_seconds": timings,
    }
    path.write_text(json.dumps(document, indent=2, default=lambda o: asdict(o)
                               if isinstance(o, PowerPoint) else o.tolist()
                               if isinstance(o, np.generic | np.ndarray) else str(o)))


# -- main ---------------------------------------------------------------------------------------
PRESETS = {"full": {"members": 300, "nonmembers": 150, "reference": 1000, "sites": 20_000,
                    "targets": 150, "utility_alleles": 300},
           "quick": {"members": 120, "nonmembers": 100, "reference": 500, "sites": 1000,
                     "targets": 100, "utility_alleles": 100}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (about 2 minutes)")
    for name, value in PRESETS["full"].items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {value} ({PRESETS['quick'][name]} with --quick)")
    parser.add_argument("--budget", type=float, default=None,
                        help="exposure_budget of the second policy (default: the node's)")
    parser.add_argument("--public-budget", type=float, default=None,
                        help="public_exposure_budget of the second policy: the share boolean "
                             "answers may use (default: the node's)")
    parser.add_argument("--caller-budget", type=int, default=1000,
                        help="attacker 2's node: query_budget per caller per hour")
    parser.add_argument("--callers", type=int, default=10, help="attacker 2: fewest researchers")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="genofed serve --workers")
    parser.add_argument("--max-k", type=int, default=None, help="ask at most this many alleles")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name, value in PRESETS["quick" if args.quick else "full"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.targets, args.nonmembers) < 100 or args.targets > args.members:
        parser.error("need at least 100 member targets (at most --members) and 100 non-members")
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with phase("data (simulated once, then cached)", timings):
        cohort = simulate(args)
    with phase("base nodes (ingest, idempotent)", timings):
        bases = {tier: base_node(cohort, tier) for tier in ("public", "registered")}
    rng = np.random.default_rng(args.seed)
    people = choose_targets(cohort, args.targets, rng)
    samples = utility_alleles(cohort, args.utility_alleles, rng)
    f = reference_frequencies(cohort.reference.dosage)
    policies, notes = make_policies(args)
    console.print(f"{len(cohort.members.samples)} members on {cohort.length_mb:g} Mb "
                  f"({int(cohort.members.dosage.any(axis=1).sum()):,} alleles), "
                  f"{len(cohort.nonmembers.samples)} non-members, "
                  f"{len(cohort.reference.samples)} in the reference panel; "
                  f"targets {args.targets} + {len(cohort.nonmembers.samples)}")

    from genofed.server.issuer import running_issuer

    runs = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with running_issuer(WORK / "privacy-issuer") as issuer, \
            Progress(*columns, console=console, transient=True) as progress:
        for policy in policies:
            run = Run(args, cohort, policy, issuer, progress, people, f, bases, samples)
            run_policy(run, timings)
            runs.append(run)
        published = Run(args, cohort, Policy("published frequencies", None), issuer, progress,
                        people, f, {"public": base_node(cohort, "public", published=True)},
                        samples)
        with phase("published frequencies: attacker 4", timings):
            node = node_copy(published.bases["public"], "published", published.policy, issuer,
                             UNLIMITED)
            with served({"published": node}, args.workers) as urls, \
                    client(published, urls["published"], "published") as beacon:
                published.results["attacker 4"] = published_attack(published, beacon)

    power_tables(runs)
    published_table(published)
    utility_table(runs)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    for run in runs:  # attacker 2's 429s are the point; anything else would be a problem
        if run.results.get("refused"):
            console.print(f"{tag(run.policy)} non-200 answers by node: {run.results['refused']}")
    timings["total"] = round(time.perf_counter() - started, 1)
    save(WORK / "privacy-results.json", args, cohort, [*runs, published], notes, timings)
    plot(runs, published, WORK / "privacy-power.png")
    console.print(f"Wrote {WORK / 'privacy-results.json'} and {WORK / 'privacy-power.png'}; "
                  f"total {timings['total']:.0f} s")


if __name__ == "__main__":
    main()
