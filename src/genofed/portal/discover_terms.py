"""What the discovery pages read from people and write back to them: the search box (a variant
`CHR-POS-REF-ALT`, a gene symbol or an HPO term, with sex and age filters), HPO suggestions,
and the words for countries, consent (DUO), access tiers, node statuses and imprecise counts.

Nothing here calls a service: the pages (:mod:`genofed.portal.discover_search`,
:mod:`genofed.portal.discover_catalogue`) do, through the APIs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from genofed.access.duo import duo_table
from genofed.beacon.variants import MAX_POSITION
from genofed.ontology.hpo import hpo

VARIANT_FORMS = ("a variant as CHR-POS-REF-ALT (e.g. 20-123456-A-G or chr20-123456-A-G; "
                 "':' also separates the parts), a gene symbol (e.g. BRCA2) or an HPO term "
                 "(an id such as HP:0001250 or a label such as Seizure)")
_SEP = r"[-:_ ]"
_VARIANT = re.compile(rf"^(?:chr)?(?P<chrom>[0-9]{{1,2}}|X|Y|MT|M){_SEP}(?P<pos>[0-9]{{1,10}})"
                      rf"{_SEP}(?P<ref>[ACGTN]+)(?:{_SEP}|>)(?P<alt>[ACGTN]+|<[A-Z0-9:_.]+>)$",
                      re.IGNORECASE)
#: Text that can only be meant as a variant (a chromosome, then a separator and a digit).
_VARIANT_LIKE = re.compile(rf"^(?:chr)?(?:[0-9]{{1,2}}|X|Y|MT?){_SEP}[0-9]+(?:{_SEP}|$)",
                           re.IGNORECASE)
_HPO_ID = re.compile(r"^HP[:_](\d{7})$", re.IGNORECASE)
_GENE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,31}$")
_CHROMOSOMES = {str(n) for n in range(1, 23)} | {"X", "Y", "MT"}
SEX_FILTERS = {"female": "NCIT:C16576", "male": "NCIT:C20197"}
MAX_AGE = 150


class BadQuery(ValueError):
    """The search cannot be run as written; the message says what is accepted."""


@dataclass(frozen=True)
class Variant:
    chromosome: str  # 1-22, X, Y, MT
    position: int  # 1-based, as in VCF
    ref: str
    alt: str

    @property
    def label(self) -> str:
        return f"{self.chromosome}-{self.position}-{self.ref}-{self.alt}"

    def beacon_parameters(self) -> dict[str, str]:
        """The Beacon's sequence query (0-based `start`)."""
        return {"referenceName": self.chromosome, "start": str(self.position - 1),
                "referenceBases": self.ref, "alternateBases": self.alt}


@dataclass(frozen=True)
class Term:
    id: str
    label: str


def parse_variant(text: str) -> Variant:
    """`20-123456-A-G`, `chr20:123456:A:G`, `X-100-C>T`; BadQuery otherwise."""
    match = _VARIANT.match(text.strip())
    if match is None:
        raise BadQuery(f"{text.strip()!r} is not a variant the portal can read. Write "
                       f"{VARIANT_FORMS}.")
    chromosome = match["chrom"].upper()
    chromosome = "MT" if chromosome == "M" else chromosome.lstrip("0")
    position = int(match["pos"])
    if chromosome not in _CHROMOSOMES:
        raise BadQuery(f"chromosome {match['chrom']!r} is not one of 1-22, X, Y or MT. Write "
                       f"{VARIANT_FORMS}.")
    if not 1 <= position <= MAX_POSITION + 1:
        raise BadQuery(f"position {position} is outside 1..{MAX_POSITION + 1}. Write "
                       f"{VARIANT_FORMS}.")
    alt = match["alt"] if match["alt"].startswith("<") else match["alt"].upper()
    return Variant(chromosome, position, match["ref"].upper(), alt)


# -- HPO ------------------------------------------------------------------------------------------
@functools.cache
def _hpo_index() -> tuple[tuple[str, str, str], ...]:
    """(lower-case label, id, label) of every current HPO term, by label."""
    terms = hpo().terms.values()
    return tuple(sorted((t.name.lower(), t.id, t.name) for t in terms
                        if not t.obsolete and t.name))


def hpo_term(text: str) -> Term | None:
    """The HPO term an id (`HP:0001250`, `hp_0001250`) or an exact label (any case) names."""
    text = text.strip()
    match = _HPO_ID.match(text)
    if match:
        term = hpo().resolve(f"HP:{match[1]}")
        return Term(term.id, term.name) if term is not None and not term.obsolete else None
    lowered = text.lower()
    for label, term_id, name in _hpo_index():
        if label == lowered:
            return Term(term_id, name)
    return None


def suggest_hpo(text: str, preferred: Sequence[Term] = (), limit: int = 10) -> list[Term]:
    """HPO terms whose label or id matches `text`: `preferred` ones (terms the network's nodes
    hold) first, then labels starting with it, then labels with a word starting with it, then
    labels containing it."""
    lowered = text.strip().lower()
    if len(lowered) < 2:
        return []
    out: dict[str, Term] = {}
    for term in preferred:
        if lowered in term.label.lower() or lowered in term.id.lower():
            out.setdefault(term.id, term)
    ranks: tuple[list[Term], list[Term], list[Term]] = ([], [], [])
    for label, term_id, name in _hpo_index():
        if lowered in term_id.lower() or label.startswith(lowered):
            ranks[0].append(Term(term_id, name))
        elif f" {lowered}" in f" {label}":
            ranks[1].append(Term(term_id, name))
        elif lowered in label:
            ranks[2].append(Term(term_id, name))
    for rank in ranks:
        for term in sorted(rank, key=lambda t: (len(t.label), t.label)):
            out.setdefault(term.id, term)
    return list(out.values())[:limit]


# -- the search box -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Search:
    """A search as the portal runs it: at most one of variant and gene, perhaps an HPO term,
    and filters on the individuals."""

    variant: Variant | None = None
    gene: str | None = None
    hpo: Term | None = None
    sex: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    #: HPO terms that free text may have meant (the page offers them; nothing is run).
    candidates: list[Term] = field(default_factory=list)
    #: The text that gave `candidates`.
    unresolved: str | None = None

    @property
    def runnable(self) -> bool:
        return self.variant is not None or self.gene is not None or self.hpo is not None

    @property
    def entry(self) -> str:
        """The network Beacon's entry type: variants, or individuals for a phenotype alone."""
        return "g_variants" if self.variant is not None or self.gene is not None \
            else "individuals"

    def filters(self) -> list[str]:
        out = [self.hpo.id] if self.hpo is not None else []
        if self.sex is not None:
            out.append(SEX_FILTERS[self.sex])
        if self.min_age is not None:
            out.append(f"age>={self.min_age}")
        if self.max_age is not None:
            out.append(f"age<={self.max_age}")
        return out

    def describe(self) -> str:
        parts = []
        if self.variant is not None:
            parts.append(f"variant {self.variant.label}")
        if self.gene is not None:
            parts.append(f"gene {self.gene}")
        if self.hpo is not None:
            parts.append(f"{self.hpo.label} ({self.hpo.id})")
        if self.sex is not None:
            parts.append(self.sex)
        if self.min_age is not None or self.max_age is not None:
            low = "" if self.min_age is None else str(self.min_age)
            high = "" if self.max_age is None else str(self.max_age)
            parts.append(f"age {low} to {high} years" if low and high else
                         f"age {'at least ' + low if low else 'at most ' + high} years")
        return ", ".join(parts)


def _gene(text: str) -> str:
    if not _GENE.match(text.strip()):
        raise BadQuery(f"{text.strip()!r} is not a gene symbol (letters, digits, '-', '.', "
                       f"'_', starting with a letter; e.g. BRCA2).")
    return text.strip()


def _age(name: str, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_AGE:
        raise BadQuery(f"{name.replace('_', ' ')} {text!r} is not a whole number of years "
                       f"between 0 and {MAX_AGE}.")
    return int(text)


def read_search(params: Mapping[str, str], preferred: Sequence[Term] = ()) -> Search:
    """The search the page's parameters ask for (`q`, or `variant`/`gene`/`hpo`, plus `sex`,
    `min_age`, `max_age`); BadQuery for anything that cannot be run as written."""
    variant = parse_variant(params["variant"]) if params.get("variant", "").strip() else None
    gene = _gene(params["gene"]) if params.get("gene", "").strip() else None
    term: Term | None = None
    candidates: list[Term] = []
    unresolved: str | None = None
    if params.get("hpo", "").strip():
        term = hpo_term(params["hpo"])
        if term is None:
            raise BadQuery(f"{params['hpo'].strip()!r} is not an HPO term: give its id (e.g. "
                           f"HP:0001250) or its exact label (e.g. Seizure).")
    text = params.get("q", "").strip()
    if text:
        if variant or gene or term:
            raise BadQuery("give the search box (q) or variant/gene/hpo, not both.")
        term = hpo_term(text)
        if term is None and _HPO_ID.match(text):
            raise BadQuery(f"{text!r} is not a current HPO term. Write {VARIANT_FORMS}.")
        if term is None and _VARIANT_LIKE.match(text):
            variant = parse_variant(text)
        elif term is None and _GENE.match(text) and not any(c.islower() for c in text):
            gene = text  # symbols are written in capitals; labels are not
        elif term is None:
            candidates = suggest_hpo(text, preferred)
            unresolved = text
            if not candidates and _GENE.match(text):
                gene = text
            elif not candidates:
                raise BadQuery(f"{text!r} is neither a variant, a gene symbol nor an HPO "
                               f"term. Write {VARIANT_FORMS}.")
    if variant is not None and gene is not None:
        raise BadQuery("search for a variant or a gene, not both.")
    sex = params.get("sex", "").strip().lower() or None
    if sex is not None and sex not in SEX_FILTERS:
        raise BadQuery(f"sex {sex!r}: choose female or male (or any).")
    min_age, max_age = _age("min_age", params.get("min_age", "")), \
        _age("max_age", params.get("max_age", ""))
    if min_age is not None and max_age is not None and min_age > max_age:
        raise BadQuery(f"the minimum age ({min_age}) is above the maximum age ({max_age}).")
    return Search(variant, gene, term, sex, min_age, max_age, candidates, unresolved)


# -- words ----------------------------------------------------------------------------------------
#: ISO 3166-1 alpha-2 -> English short name, for the countries a European network spans.
COUNTRIES = {
    "AD": "Andorra", "AL": "Albania", "AT": "Austria", "BA": "Bosnia and Herzegovina",
    "BE": "Belgium", "BG": "Bulgaria", "BY": "Belarus", "CH": "Switzerland", "CY": "Cyprus",
    "CZ": "Czechia", "DE": "Germany", "DK": "Denmark", "EE": "Estonia", "EL": "Greece",
    "ES": "Spain", "FI": "Finland", "FR": "France", "GB": "United Kingdom", "GR": "Greece",
    "HR": "Croatia", "HU": "Hungary", "IE": "Ireland", "IS": "Iceland", "IT": "Italy",
    "LI": "Liechtenstein", "LT": "Lithuania", "LU": "Luxembourg", "LV": "Latvia",
    "MC": "Monaco", "MD": "Moldova", "ME": "Montenegro", "MK": "North Macedonia",
    "MT": "Malta", "NL": "Netherlands", "NO": "Norway", "PL": "Poland", "PT": "Portugal",
    "RO": "Romania", "RS": "Serbia", "SE": "Sweden", "SI": "Slovenia", "SK": "Slovakia",
    "SM": "San Marino", "TR": "Türkiye", "UA": "Ukraine", "UK": "United Kingdom",
    "VA": "Holy See",
}


def country_name(code: str) -> str:
    return COUNTRIES.get(code.upper(), code.upper())


#: DUO terms in the words a researcher would use; other terms get DUO's own label.
_DUO_PLAIN = {
    "DUO:0000004": "No restriction",
    "DUO:0000042": "General research use",
    "DUO:0000006": "Health/medical/biomedical research",
    "DUO:0000007": "Research on a specific disease",
    "DUO:0000011": "Population origins or ancestry research only",
    "DUO:0000043": "Clinical care use",
    "DUO:0000045": "Not-for-profit organisations only",
    "DUO:0000046": "Non-commercial use only",
    "DUO:0000018": "Not-for-profit, non-commercial use only",
    "DUO:0000044": "No population origins or ancestry research",
    "DUO:0000015": "No general methods research",
    "DUO:0000016": "Genetic studies only",
    "DUO:0000021": "Ethics approval required",
    "DUO:0000020": "Collaboration with the study's investigators required",
    "DUO:0000019": "Results must be published",
    "DUO:0000029": "Return derived or enriched data to the resource",
    "DUO:0000024": "Publication moratorium",
    "DUO:0000025": "Time limit on use",
    "DUO:0000026": "Approved users only",
    "DUO:0000027": "Approved project only",
    "DUO:0000028": "Approved institutions only",
    "DUO:0000022": "Geographical restriction",
    "DUO:0000012": "Restricted to a type of research",
}


def duo_plain(curie: str, label: str | None = None) -> str:
    """A DUO term in plain words ('DUO:0000042' -> 'General research use')."""
    if curie in _DUO_PLAIN:
        return _DUO_PLAIN[curie]
    term = duo_table().get(curie)
    text = label or (term.label if term is not None else curie)
    return text[:1].upper() + text[1:]


TIER_WORDS = {
    "public": "Public: yes/no answers to anyone",
    "registered": "Registered: counts for logged-in researchers",
    "controlled": "Controlled: records after a committee's approval",
}
GRANULARITY_WORDS = {"boolean": "yes/no", "count": "count", "record": "records"}

#: Fan-out statuses (genofed.federation.client.Status) in words, and their CSS state.
STATUS_WORDS = {"ok": ("answered", "answered"), "timeout": ("timed out", "timed-out"),
                "error": ("error", "error"), "unauthorised": ("refused", "refused"),
                "invalid_answer": ("invalid answer", "error"),
                "skipped": ("not asked", "skipped")}


def status_words(status: str) -> tuple[str, str]:
    """(word, CSS state) of a member's status in `info.network`."""
    return STATUS_WORDS.get(status, (status, "error"))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def count_words(count: int, precision: str | None, adjusted_to: Sequence[int] | None,
                noun: str) -> str:
    """A disclosed count in words: an imprecise one (countPrecision 'imprecise', with the
    floor it was reported as in countAdjustedTo) as 'fewer than N'."""
    if precision == "imprecise":
        if adjusted_to:
            floor = int(adjusted_to[0])
            return f"fewer than {floor} {noun}s (between 1 and {floor - 1})"
        return f"about {plural(count, noun)} (imprecise)"
    return plural(count, noun)
