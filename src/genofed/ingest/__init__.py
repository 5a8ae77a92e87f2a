"""VCF/BCF + Phenopackets + dataset metadata -> a node's store (validated, atomic, parallel)."""

from genofed.errors import IngestError, InputError
from genofed.ingest.pipeline import IngestResult
from genofed.ingest.pipeline import ingest as ingest_dataset

__all__ = ["IngestError", "IngestResult", "InputError", "ingest_dataset"]
