"""Reading a network Beacon answer (`/network/beacon/...`, merged by
:mod:`genofed.federation.merge`) for the search and allele-frequency pages: one row per dataset
(node, country, tier, granularity, found, the count in words), one row per member node with its
status from `info.network`, and the allele frequencies the records carry.

Only what the answer holds is shown: a dataset answered at boolean level has no count here, so
the page cannot show more than the Beacon gave the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genofed.portal.discover_terms import (
    GRANULARITY_WORDS,
    count_words,
    country_name,
    plural,
    status_words,
)


@dataclass(frozen=True)
class DatasetRow:
    node: str
    country: str
    dataset: str
    tier: str
    granularity: str
    found: bool
    #: The count in words ('' at boolean level: no count was given).
    count: str
    #: What the caller can do to see more (or why nothing more is shown).
    access: str
    notes: tuple[str, ...] = ()
    #: Variant records (id, AC, AN) at record level.
    records: tuple[tuple[str, int | None, int | None], ...] = ()

    @property
    def country_name(self) -> str:
        return country_name(self.country)

    @property
    def granularity_words(self) -> str:
        return GRANULARITY_WORDS.get(self.granularity, self.granularity)


@dataclass(frozen=True)
class NodeRow:
    node: str
    country: str
    status: str
    state: str
    elapsed_ms: float | None
    message: str
    warnings: tuple[str, ...] = ()

    @property
    def country_name(self) -> str:
        return country_name(self.country)


@dataclass
class Outcome:
    """A network answer, read for a page."""

    datasets: list[DatasetRow] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    complete: bool = True
    exists: bool = False
    #: The total over the datasets that gave counts, in words ('' when none did).
    total: str = ""
    counted: int = 0
    #: The hub's own message when it answered with an error.
    error: str | None = None

    @property
    def answered(self) -> int:
        return sum(1 for n in self.nodes if n.status == "answered")


def _map(value: Any) -> Mapping[str, Any]:
    """A JSON object of an answer, or an empty one where the answer has something else."""
    return value if isinstance(value, Mapping) else {}


def _access_hint(tier: str, granularity: str, logged_in: bool) -> str:
    if granularity == "record":
        return "Records shown to you"
    if tier == "public":
        return "Public datasets answer yes or no only"
    if not logged_in:
        return "Log in for counts" + (" and to apply for access" if tier == "controlled"
                                      else "")
    if tier == "registered":
        return "Counts are the most this tier gives"
    if granularity == "count":
        return "Apply to its committee for full access"
    return "Needs a researcher visa for counts; apply for full access"


def _records(result: Mapping[str, Any]) -> tuple[tuple[str, int | None, int | None], ...]:
    out = []
    for record in result.get("results") or []:
        if not isinstance(record, Mapping):
            continue
        info = _map(record.get("info"))
        name = record.get("variantInternalId") or record.get("id")
        if name is None:
            continue
        ac, an = info.get("alleleCount"), info.get("alleleNumber")
        out.append((str(name), ac if isinstance(ac, int) else None,
                    an if isinstance(an, int) else None))
    return tuple(out)


def dataset_rows(document: Mapping[str, Any], noun: str, logged_in: bool) -> list[DatasetRow]:
    """One row per resultSet, ordered by country, node and dataset."""
    response = document.get("response")
    sets = response.get("resultSets") if isinstance(response, Mapping) else None
    rows = []
    for result in sets if isinstance(sets, list) else []:
        if not isinstance(result, Mapping):
            continue
        info = _map(result.get("info"))
        node = _map(info.get("node"))
        granularity = str(result.get("returnedGranularity", "boolean"))
        tier = str(info.get("accessTier", ""))
        count = ""
        if granularity != "boolean":
            count = count_words(int(result.get("resultsCount") or 0),
                                result.get("countPrecision"), result.get("countAdjustedTo"),
                                noun)
        notes = [str(n) for n in info.get("notes") or []]
        if info.get("rareAlleles"):
            notes.append(str(info["rareAlleles"]))
        rows.append(DatasetRow(
            node=str(node.get("id", "")), country=str(node.get("country", "")),
            dataset=str(result.get("id", "")), tier=tier, granularity=granularity,
            found=bool(result.get("exists")), count=count,
            access=_access_hint(tier, granularity, logged_in), notes=tuple(notes),
            records=_records(result) if granularity == "record" else ()))
    return sorted(rows, key=lambda r: (r.country, r.node, r.dataset))


def node_rows(document: Mapping[str, Any]) -> tuple[list[NodeRow], bool]:
    """Each member's line of `info.network`, and whether every asked member answered."""
    info = _map(document.get("info"))
    network = _map(info.get("network"))
    rows = []
    for line in network.get("nodes") or []:
        if not isinstance(line, Mapping):
            continue
        word, state = status_words(str(line.get("status", "")))
        elapsed = line.get("elapsedMs")
        rows.append(NodeRow(
            node=str(line.get("node", "")), country=str(line.get("country", "")),
            status=word, state=state,
            elapsed_ms=float(elapsed) if isinstance(elapsed, int | float) else None,
            message=str(line.get("message") or ""),
            warnings=tuple(str(w) for w in line.get("warnings") or [])))
    return rows, bool(network.get("complete", True))


def counted_total(document: Mapping[str, Any], noun: str) -> tuple[str, int]:
    """The total over the datasets that gave counts, in words, and how many did. A suppressed
    count lies between 1 and its floor - 1, so a total with one is the range those allow
    (the network's own total is absent when any dataset answered yes/no only)."""
    response = _map(document.get("response"))
    low = high = counted = 0
    for result in response.get("resultSets") or []:
        if not isinstance(result, Mapping) or result.get("returnedGranularity") in (None,
                                                                                    "boolean"):
            continue
        counted += 1
        count = int(result.get("resultsCount") or 0)
        adjusted = result.get("countAdjustedTo")
        if result.get("countPrecision") == "imprecise" and adjusted:
            low, high = low + 1, high + int(adjusted[0]) - 1
        else:
            low, high = low + count, high + count
    if not counted:
        return "", 0
    return (plural(low, noun) if low == high else f"between {low} and {high} {noun}s"), counted


def read_answer(document: Mapping[str, Any], noun: str, logged_in: bool) -> Outcome:
    """A network Beacon answer (200, or an error document with `info.network`)."""
    outcome = Outcome()
    outcome.nodes, outcome.complete = node_rows(document)
    error = document.get("error")
    if isinstance(error, Mapping):
        outcome.error = str(error.get("errorMessage") or "the network gave no answer")
        outcome.complete = False
        return outcome
    outcome.datasets = dataset_rows(document, noun, logged_in)
    summary = document.get("responseSummary")
    outcome.exists = bool(summary.get("exists")) if isinstance(summary, Mapping) else False
    outcome.total, outcome.counted = counted_total(document, noun)
    return outcome


# -- allele frequencies ---------------------------------------------------------------------------
class _Counts:
    """AF from AC/AN, and the country's name, of a row of counts."""

    country: str
    ac: int
    an: int

    @property
    def af(self) -> float:
        return self.ac / self.an if self.an else 0.0

    @property
    def country_name(self) -> str:
        return country_name(self.country)


@dataclass(frozen=True)
class FrequencyRow(_Counts):
    country: str
    node: str
    dataset: str
    #: 'all', 'sex' or 'population'
    kind: str
    group: str
    ac: int
    an: int
    hom: int | None = None
    het: int | None = None
    hemi: int | None = None


@dataclass(frozen=True)
class Withheld:
    """A dataset that answered without frequencies, and why."""

    country: str
    node: str
    dataset: str
    tier: str
    granularity: str
    found: bool
    reason: str

    @property
    def country_name(self) -> str:
        return country_name(self.country)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _withheld_reason(tier: str, granularity: str, found: bool) -> str:
    if granularity == "record" and not found:
        return "The dataset does not hold this variant."
    if granularity == "record":
        return "The dataset's records carry no allele counts for this variant."
    level = GRANULARITY_WORDS.get(granularity, granularity)
    if tier == "public":
        why = ("a public dataset answers yes or no only, unless its node publishes its "
               "allele frequencies (this one does not)")
    elif tier == "registered":
        why = "a registered dataset gives counts of variants at most, never frequencies"
    else:
        why = ("a controlled dataset gives frequencies with its records, after its "
               "committee approves an application")
    return f"Answered at {level} level: {why}."


def frequencies(document: Mapping[str, Any]) -> tuple[list[FrequencyRow], list[Withheld]]:
    """The frequencies each dataset's records carry (`frequencyInPopulations`: the dataset's
    groups 'all', 'female', 'male' and each population), and the datasets that gave none."""
    rows: list[FrequencyRow] = []
    withheld: list[Withheld] = []
    response = document.get("response")
    sets = response.get("resultSets") if isinstance(response, Mapping) else None
    for result in sets if isinstance(sets, list) else []:
        if not isinstance(result, Mapping):
            continue
        info = _map(result.get("info"))
        node = _map(info.get("node"))
        where = (str(node.get("country", "")), str(node.get("id", "")), str(result.get("id")))
        found_any = False
        for record in result.get("results") or []:
            sources = record.get("frequencyInPopulations") if isinstance(record, Mapping) \
                else None
            for source in sources if isinstance(sources, list) else []:
                for item in source.get("frequencies") or []:
                    ac, an = _int(item.get("alleleCount")), _int(item.get("alleleNumber"))
                    if ac is None or not an:
                        continue
                    group = str(item.get("population", ""))
                    kind = "all" if group == "all" else \
                        "sex" if group in ("female", "male") else "population"
                    rows.append(FrequencyRow(
                        *where, kind=kind, group=group, ac=ac, an=an,
                        hom=_int(item.get("alleleCountHomozygous")),
                        het=_int(item.get("alleleCountHeterozygous")),
                        hemi=_int(item.get("alleleCountHemizygous"))))
                    found_any = True
        if not found_any:
            tier = str(info.get("accessTier", ""))
            granularity = str(result.get("returnedGranularity", "boolean"))
            withheld.append(Withheld(*where, tier=tier, granularity=granularity,
                                     found=bool(result.get("exists")),
                                     reason=_withheld_reason(tier, granularity,
                                                             bool(result.get("exists")))))
    order = {"all": 0, "population": 1, "sex": 2}
    rows.sort(key=lambda r: (r.country, r.node, r.dataset, order[r.kind], r.group))
    withheld.sort(key=lambda w: (w.country, w.node, w.dataset))
    return rows, withheld


@dataclass(frozen=True)
class Pooled(_Counts):
    country: str
    population: str
    ac: int
    an: int


def pooled(rows: list[FrequencyRow]) -> list[Pooled]:
    """AC and AN summed per country and population over the datasets that gave them (a
    dataset without population groups counts under 'all')."""
    with_populations = {(r.node, r.dataset) for r in rows if r.kind == "population"}
    sums: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        if row.kind == "population" or (row.kind == "all"
                                        and (row.node, row.dataset) not in with_populations):
            pair = sums.setdefault((row.country, row.group), [0, 0])
            pair[0] += row.ac
            pair[1] += row.an
    return [Pooled(country, population, ac, an)
            for (country, population), (ac, an) in sorted(sums.items())]


def chart(variant: str, pooled_rows: list[Pooled]) -> dict[str, Any]:
    """A Chart.js bar chart (plain JSON: no functions) of AF per population, a bar per
    country: the same numbers as the pooled table."""
    populations = sorted({p.population for p in pooled_rows})
    countries = sorted({p.country for p in pooled_rows})
    by_key = {(p.country, p.population): p.af for p in pooled_rows}
    return {
        "type": "bar",
        "data": {"labels": populations, "datasets": [
            {"label": country_name(country),
             "data": [round(by_key[(country, pop)], 6) if (country, pop) in by_key else None
                      for pop in populations]}
            for country in countries]},
        "options": {"animation": False, "responsive": True, "maintainAspectRatio": False,
                    "plugins": {"title": {"display": True,
                                          "text": f"Allele frequency of {variant}"}},
                    "scales": {"y": {"beginAtZero": True,
                                     "title": {"display": True,
                                               "text": "Allele frequency (AF)"}},
                               "x": {"title": {"display": True, "text": "Population"}}}},
    }
