"""Dataset metadata: what a node knows about a dataset besides its data.

The JSON form (a dataset's `dataset.json`) follows the Beacon v2 dataset model (`id`, `name`,
`dataUseConditions.duoDataUse`, ...) plus genofed's own fields (`accessTier`, `assemblyId`,
`population`). The dataset id is the one shared by the catalogue, Beacon resultSets, visas and
files.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from genofed.errors import MetadataError

DATASET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_CURIE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*:[^\s]+$")


class AccessTier(StrEnum):
    """How much a dataset reveals, and to whom (DESIGN: privacy and security model)."""

    PUBLIC = "public"  # boolean answers to anyone
    REGISTERED = "registered"  # counts to registered researchers
    CONTROLLED = "controlled"  # records, files, analyses: a ControlledAccessGrants visa


class AlleleFrequencyRelease(StrEnum):
    """Whether a dataset publishes its allele frequencies to anyone (a reference resource such
    as a national cohort, as gnomAD does), chosen explicitly by the operator."""

    WITHHELD = "withheld"  # the default: frequencies follow the access tier
    PUBLIC = "public"  # AC/AN/AF and genotype counts by population and sex, to anyone


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class OntologyTerm(_Model):
    id: str
    label: str | None = None

    @field_validator("id")
    @classmethod
    def _curie(cls, value: str) -> str:
        if not _CURIE.match(value):
            raise ValueError(f"{value!r} is not a CURIE such as 'DUO:0000042'")
        return value


class DuoDataUse(OntologyTerm):
    """One DUO data-use permission (e.g. DUO:0000042 GRU) with its modifiers (e.g. DUO:0000046)."""

    version: str | None = None
    modifiers: list[OntologyTerm] = Field(default_factory=list)


class DataUseConditions(_Model):
    duo_data_use: list[DuoDataUse] = Field(default_factory=list)


class DatasetMetadata(_Model):
    """A dataset's descriptive and governance metadata."""

    id: str = Field(pattern=DATASET_ID_PATTERN)
    name: str
    description: str = ""
    version: str = "1"
    assembly_id: str = "GRCh38"
    access_tier: AccessTier = AccessTier.CONTROLLED
    #: `public` publishes allele frequencies to anyone, whatever the tier (membership of the
    #: dataset is then exposed as frequencies expose it: see benchmarks/privacy.py).
    allele_frequencies: AlleleFrequencyRelease = AlleleFrequencyRelease.WITHHELD
    data_use_conditions: DataUseConditions = Field(default_factory=DataUseConditions)
    #: Population label for samples that carry none of their own (e.g. a national cohort).
    population: str | None = None
    keywords: list[str] = Field(default_factory=list)
    external_url: str | None = None
    create_date_time: str | None = None
    update_date_time: str | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2)

    @classmethod
    def default_for(cls, dataset_id: str) -> DatasetMetadata:
        """Metadata for a dataset ingested without a metadata file: controlled, no stated use."""
        return cls(id=dataset_id, name=dataset_id)


def load_metadata(path: Path) -> DatasetMetadata:
    """Read and validate a dataset.json; errors name the file and the offending field."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise MetadataError(f"{path}: no such file") from None
    return parse_metadata(text, str(path))


def parse_metadata(text: str | bytes, name: str) -> DatasetMetadata:
    """Validate a dataset.json's content; `name` says where it came from in errors."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{name}: line {exc.lineno}, column {exc.colno}: invalid JSON: "
                            f"{exc.msg}") from None
    try:
        return DatasetMetadata.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(root)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise MetadataError(f"{name}: {problems}") from None
