"""What `POST /analysis/jobs` accepts, one model per job type, so that the OpenAPI document states
every rule a job spec must follow (a trait of the right kind per type, covariates for GWAS jobs
only, a scoring file for a PRS job, terms as CURIEs): a body the document allows is a job the
coordinator runs. Each request becomes the one :class:`~genofed.analysis.spec.JobSpec` the rest
of the package reads (:meth:`to_spec`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from genofed.analysis.spec import CohortFilter, Curie, JobSpec, PcaOptions, PrsOptions

#: sex, age, a measurement's code, or pc1..pc99 (the pcaJob's components).
_COVARIATE = r"^(sex|age|pc[1-9][0-9]?|[A-Za-z][A-Za-z0-9_.]*:[^\s]+)$"
Covariate = Annotated[str, Field(pattern=_COVARIATE)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)


class Measurement(_Model):
    """A quantitative trait: a Phenopacket measurement by its assay code (LDL: LOINC:2089-1)."""

    measurement: Curie


class HpoTerm(_Model):
    """A binary trait: carriers of an HPO term or a descendant are cases."""

    hpo: str = Field(pattern=r"^HP:\d{7}$")


class Disease(_Model):
    """A binary trait: individuals with the disease are cases."""

    disease: Curie


class _Job(_Model):
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                             description="Names the result files (gwas-NAME.tsv, ...).")
    datasets: list[str] | None = Field(default=None, description="Dataset ids (default: every "
                                       "dataset the researcher holds a grant for).")
    cohort: CohortFilter = Field(default_factory=CohortFilter)
    assembly: Literal["GRCh37", "GRCh38"] = "GRCh38"
    min_mac: int = Field(default=10, ge=1, description="Release results only for variants "
                         "whose pooled minor allele count reaches this (nodes may ask more).")

    def to_spec(self) -> JobSpec:
        return JobSpec.model_validate(self.model_dump(by_alias=True, exclude_none=True))


class FreqJob(_Job):
    """Allele frequencies, genotype counts, HWE and missingness (plink2 --freq/--hardy/
    --missing), overall, per sex and per population."""

    type: Literal["freq"]


#: Covariate pc1..pcN needs the pca job whose scores the nodes kept.
_PCS_NEED_A_PCA_JOB: dict[str, Any] = {
    "if": {"required": ["covariates"],
           "properties": {"covariates": {"contains": {"pattern": "^pc"}}}},
    "then": {"required": ["pcaJob"]},
}


class _Gwas(_Job):
    covariates: list[Covariate] = Field(default_factory=list,
                                        json_schema_extra={"uniqueItems": True})
    pca_job: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$",
                                description="The pca job whose components pc1..pcN are "
                                            "covariates (each node kept its scores).")


class LinearJob(_Gwas):
    """A quantitative-trait GWAS (plink2 --glm linear)."""

    model_config = ConfigDict(json_schema_extra=_PCS_NEED_A_PCA_JOB)
    type: Literal["gwas-linear"]
    trait: Measurement


class LogisticJob(_Gwas):
    """A binary-trait GWAS (plink2 --glm logistic, Firth fallback)."""

    model_config = ConfigDict(json_schema_extra=_PCS_NEED_A_PCA_JOB)
    type: Literal["gwas-logistic"]
    trait: HpoTerm | Disease


class PcaJob(_Job):
    """Principal components (plink2 --pca meanimpute); nodes keep their individuals' scores."""

    type: Literal["pca"]
    pca: PcaOptions = Field(default_factory=PcaOptions)


class PrsJob(_Job):
    """A polygenic score's distribution (plink2 --score at each node), with odds ratios per
    quantile and the AUC for a binary trait."""

    type: Literal["prs"]
    prs: PrsOptions
    trait: Measurement | HpoTerm | Disease | None = None


JobRequest = Annotated[FreqJob | LinearJob | LogisticJob | PcaJob | PrsJob,
                       Field(discriminator="type")]
