"""What a researcher asks for: a job of one of a fixed set of reviewed types (nodes run no
submitted code), over a cohort chosen with the Beacon filter vocabulary.

    {"type": "gwas-linear",
     "cohort": {"sex": "female", "minAge": 40},
     "trait": {"measurement": "LOINC:2089-1"},
     "covariates": ["sex", "age"]}

Every node reads the same spec and selects its own individuals; nothing about individuals travels
with it. A spec is validated where it enters (the hub) and again at every node.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

_CURIE = r"^[A-Za-z][A-Za-z0-9_.]*:[^\s]+$"
_PC = re.compile(r"^pc([1-9][0-9]?)$")
#: A term such as HP:0001250 or LOINC:2089-1.
Curie = Annotated[str, Field(pattern=_CURIE)]


class AnalysisType(StrEnum):
    FREQ = "freq"
    LINEAR = "gwas-linear"
    LOGISTIC = "gwas-logistic"
    PCA = "pca"
    PRS = "prs"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)


class CohortFilter(_Model):
    """Who takes part, at every node: all criteria must hold (HPO terms include their
    descendants, as Beacon filters do)."""

    sex: Literal["female", "male"] | None = None
    #: An age range with minAge above maxAge selects no one (and nodes then say so).
    min_age: float | None = Field(default=None, ge=0)
    max_age: float | None = Field(default=None, ge=0)
    hpo: list[Curie] = Field(default_factory=list)
    diseases: list[Curie] = Field(default_factory=list)


class Trait(_Model):
    """The phenotype: a Phenopacket measurement by its assay code (quantitative; e.g. LDL
    cholesterol LOINC:2089-1), or an HPO term with its descendants or a disease (binary: carriers
    are cases, everyone else in the cohort a control)."""

    measurement: str | None = Field(default=None, pattern=_CURIE)
    hpo: str | None = Field(default=None, pattern=r"^HP:\d{7}$")
    disease: str | None = Field(default=None, pattern=_CURIE)

    @model_validator(mode="after")
    def _one(self) -> Trait:
        given = [v for v in (self.measurement, self.hpo, self.disease) if v is not None]
        if len(given) != 1:
            raise ValueError("a trait is exactly one of measurement, hpo or disease")
        return self

    @property
    def binary(self) -> bool:
        return self.measurement is None

    @property
    def name(self) -> str:
        return str(self.measurement or self.hpo or self.disease)


class PcaOptions(_Model):
    """Principal components over variants thinned to one per `min_distance` base pairs with
    pooled minor allele frequency at least `min_maf` (LD pruning's stand-in: nearby variants are
    the ones in LD)."""

    components: int = Field(default=10, ge=1, le=50)
    min_maf: float = Field(default=0.05, gt=0, lt=0.5)
    min_distance: int = Field(default=2_000, ge=1)


class PrsOptions(_Model):
    """A polygenic score: a PGS Catalog scoring file (its text), applied at each node; only
    its distribution leaves (`bins` histogram bins, `quantiles` for odds ratios)."""

    scoring_file: str = Field(min_length=1, max_length=50_000_000)
    bins: int = Field(default=20, ge=5, le=200)
    quantiles: int = Field(default=5, ge=2, le=20)


class JobSpec(_Model):
    type: AnalysisType
    #: Names the result files (a GWAS's are gwas-<name>.tsv, ...; default: from the trait).
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    #: Dataset ids; None: every dataset of every node that the researcher holds a grant for.
    datasets: list[str] | None = None
    cohort: CohortFilter = Field(default_factory=CohortFilter)
    trait: Trait | None = None
    #: "sex", "age", a measurement code (e.g. "LOINC:2089-1"), or "pc1".."pcN" of `pca_job`.
    covariates: list[str] = Field(default_factory=list)
    pca_job: str | None = None
    assembly: Literal["GRCh37", "GRCh38"] = "GRCh38"
    #: Results only for variants whose pooled minor allele count reaches this (nodes may ask
    #: for more: the larger of theirs and this applies).
    min_mac: int = Field(default=10, ge=1)
    pca: PcaOptions = Field(default_factory=PcaOptions)
    prs: PrsOptions | None = None

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        gwas = self.type in (AnalysisType.LINEAR, AnalysisType.LOGISTIC)
        if gwas and self.trait is None:
            raise ValueError(f"a {self.type} job needs a trait")
        if self.type is AnalysisType.LINEAR and self.trait and self.trait.binary:
            raise ValueError("gwas-linear needs a quantitative trait (a measurement); use "
                             "gwas-logistic for an HPO term or a disease")
        if self.type is AnalysisType.LOGISTIC and self.trait and not self.trait.binary:
            raise ValueError("gwas-logistic needs a binary trait (hpo or disease); use "
                             "gwas-linear for a measurement")
        if self.type is AnalysisType.PRS and self.prs is None:
            raise ValueError("a prs job needs prs.scoringFile")
        if self.covariates and not gwas:
            raise ValueError("covariates apply to gwas-linear and gwas-logistic jobs only")
        for covariate in self.covariates:
            if covariate not in ("sex", "age") and not _PC.match(covariate) \
                    and not re.match(_CURIE, covariate):
                raise ValueError(f"covariate {covariate!r}: use sex, age, a measurement code "
                                 "(e.g. LOINC:2089-1) or pc1..pcN")
            if _PC.match(covariate) and self.pca_job is None:
                raise ValueError(f"covariate {covariate} needs pcaJob: the pca job whose "
                                 "scores each node keeps")
        if len(set(self.covariates)) != len(self.covariates):
            raise ValueError("a covariate is listed twice")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


def principal_components(covariates: list[str]) -> list[int]:
    """The 1-based component numbers among `covariates` (pc3 -> 3)."""
    return [int(m.group(1)) for c in covariates if (m := _PC.match(c))]
