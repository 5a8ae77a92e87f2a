"""The Beacon over a node store: one call per entry-type query, returning the response document.

For each dataset in scope: ask the access policy for the granularity
(:func:`~genofed.beacon.access.granted_granularity`), match, apply disclosure control (the count
floor, and below record level each carrier's exposure budget: :mod:`genofed.beacon.exposure`),
shape one resultSet (`id` = dataset id, `setType` = "dataset"). A dataset that publishes its
allele frequencies answers g_variants with them to anyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genofed.access.exposure import FREE_EVIDENCE, ExposureLedger
from genofed.access.policy import Action
from genofed.beacon import entities
from genofed.beacon.access import Requester, granted_granularity
from genofed.beacon.disclosure import DisclosedCount, disclose
from genofed.beacon.exposure import (
    banded,
    people_count,
    reaches,
    release_people,
    release_variants,
)
from genofed.beacon.filters import FilterPlan, individuals_mask, plan_filters
from genofed.beacon.request import BeaconQuery, Granularity
from genofed.beacon.responses import collections_response, response_meta
from genofed.beacon.variants import (
    KNOWN_PARAMETERS,
    VariantQuery,
    carried_by,
    carriers,
    match_sites,
    parse_variant_id,
    parse_variant_query,
)
from genofed.config.live import LiveConfig
from genofed.config.node import DisclosureSettings
from genofed.errors import (
    BeaconForbiddenError,
    BeaconNotFoundError,
    UnknownDatasetError,
    UnsupportedQueryError,
)
from genofed.store.dataset import Dataset
from genofed.store.metadata import AccessTier, AlleleFrequencyRelease
from genofed.store.node import NodeStore

ENTITY = {"g_variants": "genomicVariation", "individuals": "individual",
          "biosamples": "biosample"}


@dataclass(frozen=True)
class Scope:
    """Restrictions that come from the URL path rather than the query."""

    dataset_id: str | None = None
    variant_id: str | None = None
    individual_id: str | None = None


@dataclass
class _DatasetAnswer:
    dataset: Dataset
    granted: Granularity
    total: int
    page: Callable[[int, int], list[dict[str, Any]]]
    #: counts people (individuals, biosamples): the floor applies. Variant counts need none:
    #: they count variants (rare ones, which only registered callers see, are flagged).
    counts_people: bool = True
    notes: list[str] = field(default_factory=list)
    #: alleles carried by fewer than `floor` individuals, shown to a registered caller as
    #: imprecise (they get a handover to the dataset's access application)
    rare: int = 0


#: Individuals that a query without variant conditions scans in well under a millisecond.
QUICK_INDIVIDUALS = 5_000
_VARIANT_PARAMETERS = KNOWN_PARAMETERS - {"datasets", "datasetIds"}


class BeaconService:
    def __init__(self, store: NodeStore, live: LiveConfig | None = None,
                 exposure: ExposureLedger | None = None) -> None:
        """`live`: node.toml as it is now (disclosure settings apply without a restart);
        `exposure`: the node's ledger of membership evidence per individual (None: answers
        are not accounted, as in tools that read a store directly)."""
        self.store = store
        self.live = live
        self.exposure = exposure
        self.node_id = store.config.node_id

    @property
    def floor(self) -> int:
        """Counts below this are never revealed as such (`disclosure.count_floor`)."""
        return self._disclosure.count_floor

    @property
    def _disclosure(self) -> DisclosureSettings:
        config = self.live.current() if self.live is not None else self.store.config
        return config.disclosure

    @property
    def budget(self) -> float:
        """Membership evidence each individual may reveal below record level (0: off)."""
        if self.exposure is None:
            return 0.0
        return self._disclosure.exposure_budget

    def _limit(self, granted: Granularity) -> float | None:
        """How much of an individual's budget an answer may have spent: booleans (anyone's)
        the public share, counts (accountable researchers') all of it."""
        if granted is Granularity.BOOLEAN:
            return self._disclosure.public_exposure_budget
        return None

    # -- helpers ------------------------------------------------------------------------------
    def datasets(self, dataset_id: str | None = None,
                 requested: list[str] | None = None) -> list[Dataset]:
        if dataset_id is not None:
            try:
                return [self.store.dataset(dataset_id)]
            except (UnknownDatasetError, ValueError) as exc:
                raise BeaconNotFoundError(str(exc)) from None
        all_sets = self.store.datasets()
        if requested:
            known = {d.id for d in all_sets}
            unknown = [r for r in requested if r not in known]
            if unknown:
                raise BeaconNotFoundError(f"unknown dataset(s) {', '.join(unknown)}; this node has "
                                    f"{', '.join(sorted(known)) or 'none'}")
            return [d for d in all_sets if d.id in requested]
        return all_sets

    def answers_quickly(self, entry: str, query: BeaconQuery, scope: Scope) -> bool:
        """Whether a query costs less than a hop to a worker thread would: variant lookups
        without individual filters, and individual queries without variant conditions over
        few individuals already in memory. Whatever may touch genotypes, decrypt a table or
        scan many individuals goes to the thread pool, so it never stalls the event loop."""
        if entry == "g_variants":
            return not query.filters and scope.individual_id is None
        if scope.variant_id is not None or not _VARIANT_PARAMETERS.isdisjoint(query.parameters):
            return False
        datasets = self.store.datasets()
        return all(d.individuals_loaded for d in datasets) and \
            sum(d.manifest.n_samples for d in datasets) <= QUICK_INDIVIDUALS

    def known_contigs(self) -> set[str]:
        from genofed.store.sites import normalize_contig

        return {normalize_contig(c) for d in self.store.datasets() for c in d.contigs}

    def _variant_query(self, query: BeaconQuery, scope: Scope) -> VariantQuery:
        contigs = self.known_contigs()
        if scope.variant_id is not None:
            return parse_variant_id(scope.variant_id, contigs)
        return parse_variant_query(query.parameters, contigs)

    # -- entry types --------------------------------------------------------------------------
    def entry_query(self, entry: str, query: BeaconQuery, requester: Requester, scope: Scope,
                    base_url: str) -> dict[str, Any]:
        entity = ENTITY[entry]
        warnings = [f"requestParameters.{k}: not a parameter this Beacon knows; ignored"
                    for k in query.parameters if k not in KNOWN_PARAMETERS]
        plan = plan_filters(query.filters)
        warnings.extend(plan.warnings)
        variants = self._variant_query(query, scope)
        datasets = self.datasets(scope.dataset_id, query.requested_datasets())
        if variants.gene_id is not None:
            without = [d.id for d in datasets if not d.has_gene_table]
            if len(without) == len(datasets):
                raise UnsupportedQueryError("geneId queries need a gene table given at ingest "
                                            "(`genofed ingest --genes`); the datasets queried "
                                            "have none")
            warnings.extend(f"dataset {d}: no gene table, so no geneId matches" for d in without)
        named = scope.dataset_id is not None or bool(query.requested_datasets())
        answers = []
        for dataset in datasets:
            if entry == "g_variants" and _publishes_frequencies(dataset, plan, scope):
                answers.append(self._published(dataset, query, variants, requester, scope,
                                               base_url))
                continue
            # Records of a controlled dataset the caller named: all or nothing (403).
            strict = named and query.granularity is Granularity.RECORD and \
                dataset.metadata.access_tier is AccessTier.CONTROLLED
            granted = granted_granularity(dataset, query.granularity, requester,
                                          detail=f"/{entry}", degrade=not strict)
            if strict and granted.granularity is not Granularity.RECORD:
                raise BeaconForbiddenError(
                    f"record level refused for dataset {dataset.id!r}: {granted.reason}; "
                    f"apply to its committee for access (POST /access/applications)")
            if granted.granularity is None:
                warnings.append(granted.refusal or f"dataset {dataset.id}: not answered")
                continue
            if entry == "g_variants":
                answer = self._variants(dataset, granted.granularity, variants, plan, scope,
                                        base_url)
            else:
                answer = self._individuals(dataset, granted.granularity, variants, plan, scope,
                                           entry)
            if granted.refusal:
                answer.notes.append(granted.refusal)
            answers.append(answer)
        return self._resultsets(entity, query, answers, warnings, base_url)

    def _individuals(self, dataset: Dataset, granted: Granularity, variants: VariantQuery,
                     plan: FilterPlan, scope: Scope, entry: str) -> _DatasetAnswer:
        table = dataset.individuals
        mask = individuals_mask(table, plan)
        if scope.individual_id is not None:
            mask &= np.asarray(table.column("sample_id").to_pylist(), dtype=object) == \
                scope.individual_id
        accounted: int | None = None
        rare = 0
        if variants.active and mask.any():
            rows = match_sites(dataset, variants)
            if granted is Granularity.BOOLEAN:
                # Public answers: rare alleles take part in no match. Registered callers see
                # them, as an imprecise count (and accounted like any other count).
                rows = rows.filter(pc.greater_equal(rows.column("ac"), self.floor))
            carrying = carriers(dataset, rows)
            if granted is not Granularity.RECORD and self.exposure is not None \
                    and self.budget > 0:
                released = release_people(self.exposure, dataset, rows, mask, carrying,
                                          people_count(self.floor, granted), f"/{entry}",
                                          self._limit(granted))
                accounted = released.count
            mask &= carrying
        selected = np.flatnonzero(mask)
        total = len(selected) if accounted is None else accounted
        if granted is Granularity.COUNT and 0 < total < self.floor and variants.active:
            rare = 1
        shape = entities.individual if entry == "individuals" else entities.biosample

        def page(offset: int, limit: int) -> list[dict[str, Any]]:
            rows = table.take(pa.array(selected[offset:offset + limit])).to_pylist()
            return [shape(r, dataset) for r in rows]

        return _DatasetAnswer(dataset, granted, total, page, rare=rare)

    def _published(self, dataset: Dataset, query: BeaconQuery, variants: VariantQuery,
                   requester: Requester, scope: Scope, base_url: str) -> _DatasetAnswer:
        """g_variants of a dataset that publishes its allele frequencies: every allele it
        carries, at the granularity asked for, records with AC/AN/AF and genotype counts per
        population and sex; not accounted (what is published is no secret)."""
        requester.policy.decide(requester.principal, dataset.metadata,
                                Action.BEACON_FREQUENCIES, detail="/g_variants")
        rows = match_sites(dataset, variants)

        def page(offset: int, limit: int) -> list[dict[str, Any]]:
            return entities.genomic_variations(rows.slice(offset, limit), dataset, base_url,
                                               with_genotype_counts=True)

        note = ("allele frequencies published by the node operator: AC, AN, AF and "
                "homozygous/heterozygous/hemizygous counts by population and sex, to anyone")
        return _DatasetAnswer(dataset, query.granularity, rows.num_rows, page,
                              counts_people=False, notes=[note])

    def _variants(self, dataset: Dataset, granted: Granularity, variants: VariantQuery,
                  plan: FilterPlan, scope: Scope, base_url: str) -> _DatasetAnswer:
        rows = match_sites(dataset, variants)
        selection: np.ndarray | None = None
        if plan.active:
            selection = individuals_mask(dataset.individuals, plan)
        if scope.individual_id is not None:
            ids = np.asarray(dataset.individuals.column("sample_id").to_pylist(), dtype=object)
            own = ids == scope.individual_id
            selection = own if selection is None else selection & own
        if selection is not None:
            support = carried_by(dataset, rows, selection)
        else:
            support = rows.column("ac").to_numpy()
        # Public (boolean) answers show alleles carried at least `floor` times; registered
        # callers (counts) also rare ones, flagged as carried by fewer than `floor`.
        threshold = self.floor if granted is Granularity.BOOLEAN else 1
        if granted is not Granularity.RECORD and self.exposure is not None and self.budget > 0:
            tell = reaches(self.floor) if granted is Granularity.BOOLEAN else banded(self.floor)
            support = release_variants(self.exposure, dataset, rows, selection, support, tell,
                                       f"/g_variants/{granted.value}", self._limit(granted))
        keep = support >= threshold
        rare = 0 if granted is not Granularity.COUNT else int(
            np.count_nonzero(keep & (support < self.floor)))
        if not keep.all():
            rows = rows.filter(pa.array(keep))

        def page(offset: int, limit: int) -> list[dict[str, Any]]:
            return entities.genomic_variations(rows.slice(offset, limit), dataset, base_url)

        return _DatasetAnswer(dataset, granted, rows.num_rows, page, counts_people=False,
                              rare=rare)

    def _resultsets(self, entity: str, query: BeaconQuery, answers: list[_DatasetAnswer],
                    warnings: list[str], base_url: str) -> dict[str, Any]:
        sets = []
        handovers = []
        any_exists = False
        total = 0
        adjusted = False
        for answer in answers:
            info: dict[str, Any] = {"accessTier": answer.dataset.metadata.access_tier.value}
            result: dict[str, Any] = {"id": answer.dataset.id, "setType": "dataset",
                                      "returnedGranularity": answer.granted.value}
            if answer.granted is Granularity.BOOLEAN:
                exists = disclose(answer.total, self.floor).exists
                result.update(exists=exists, resultsCount=0, results=[])
                info["countWithheld"] = ("boolean granularity: resultsCount is not a count; "
                                         "see exists")
            elif answer.granted is Granularity.COUNT:
                shown: DisclosedCount = disclose(answer.total,
                                                 self.floor if answer.counts_people else 1)
                exists = shown.exists
                result.update(exists=exists, resultsCount=shown.value, results=[],
                              **shown.fields())
                total += shown.value
                adjusted |= shown.adjusted_to is not None
            else:
                exists = answer.total > 0
                result.update(exists=exists, resultsCount=answer.total, countPrecision="exact",
                              results=answer.page(query.offset, query.page_size))
                total += answer.total
            if answer.notes:
                info["notes"] = answer.notes
            if answer.rare:
                info["rareAlleles"] = (f"{answer.rare} matched allele(s) carried by fewer than "
                                       f"{self.floor} individuals (between 1 and "
                                       f"{self.floor - 1}); apply for access to see them")
                handovers.append(access_handover(answer.dataset.id, base_url))
            result["info"] = info
            any_exists |= exists
            wanted = (query.include == "ALL" or (query.include == "HIT" and exists)
                      or (query.include == "MISS" and not exists))
            if wanted:
                sets.append(result)
        granularity = Granularity.coarsest([a.granted for a in answers]) if answers \
            else query.granularity
        summary: dict[str, Any] = {"exists": any_exists}
        if granularity is not Granularity.BOOLEAN:
            summary["numTotalResults"] = total
            summary["countPrecision"] = "imprecise" if adjusted else "exact"
        response_info: dict[str, Any] = {
            "disclosure": disclosure_policy(self.floor, self.budget,
                                            self._disclosure.public_exposure_budget),
            "pagination": "skip counts pages of `limit` records (offset = skip * limit)",
        }
        if warnings:
            response_info["warnings"] = warnings
        return {
            "meta": response_meta(self.node_id, entity, query, granularity),
            "responseSummary": summary,
            "response": {"resultSets": sets},
            "info": response_info,
            "beaconHandovers": handovers,
        }

    # -- collections --------------------------------------------------------------------------
    def collections(self, entry: str, query: BeaconQuery, collection_id: str | None
                    ) -> dict[str, Any]:
        entity = "dataset" if entry == "datasets" else "cohort"
        datasets = self.datasets(collection_id)
        shape = entities.dataset_record if entry == "datasets" else entities.cohort_record
        records = [shape(d) for d in datasets]
        info: dict[str, Any] = {"note": "collection metadata is public catalogue information and "
                                        "is returned at record level to every caller"}
        if query.filters:
            info["warnings"] = [f"filter {f}: filters do not apply to {entry}; not applied"
                                for f in query.filters]
        page = records[query.offset:query.offset + query.page_size]
        return collections_response(self.node_id, entity, query, page, len(records), info)


def _publishes_frequencies(dataset: Dataset, plan: FilterPlan, scope: Scope) -> bool:
    """Whether a g_variants answer is the dataset's published allele frequencies (filters on
    individuals select subgroups, whose frequencies are not published)."""
    return (dataset.metadata.allele_frequencies is AlleleFrequencyRelease.PUBLIC
            and not plan.active and scope.individual_id is None)


def disclosure_policy(floor: int, budget: float, public: float) -> dict[str, Any]:
    """What every answer below record level was subject to (`info.disclosure`)."""
    policy = {
        "countFloor": floor,
        "policy": f"counts of people between 1 and {floor - 1} are reported as {floor} with "
                  f"countPrecision 'imprecise' and countAdjustedTo [{floor}]; in boolean "
                  f"answers, alleles carried fewer than {floor} times (in the selected "
                  f"individuals) take part in no match; registered callers see such rare "
                  f"alleles, flagged as carried by fewer than {floor} individuals, with a "
                  f"handover to the dataset's access application",
    }
    if budget > 0:
        policy["exposureBudget"] = {
            "nats": budget,
            "publicNats": min(public, budget),
            "policy": "membership evidence revealed about each individual is accounted over "
                      "all callers and all time; each answer below record level spends its "
                      "evidence from every carrier it depends on, and an individual whose "
                      "budget cannot pay is left out of the count; one who has spent it takes "
                      "part in no answer (boolean answers, open to anyone, may use only the "
                      "public share of the budget; counts, for registered researchers, all "
                      "of it); an answer is remembered and repeated unchanged, at no cost, "
                      f"when asked again; answers whose evidence is below {FREE_EVIDENCE:g} "
                      "nats are not accounted",
        }
    else:
        policy["exposureBudget"] = {"nats": 0, "policy": "off: the count floor alone applies"}
    return policy


def access_handover(dataset_id: str, base_url: str) -> dict[str, Any]:
    """Where a researcher who found rare alleles goes next: the dataset's catalogue record (how
    to get access) and the application endpoint."""
    root = base_url.removesuffix("/beacon")
    return {"handoverType": {"id": "CUSTOM:access-application",
                             "label": "apply for access to the dataset"},
            "url": f"{root}/catalogue/datasets/{dataset_id}",
            "note": f"dataset {dataset_id} has rare alleles matching this query; apply to its "
                    f"committee for record-level access: POST {root}/access/applications "
                    f'with {{"datasets": ["{dataset_id}"], ...}}'}
