"""DCAT-AP / HealthDCAT-AP catalogue of a node's datasets (records, and the /catalogue API)."""

from genofed.catalogue.records import (
    ACCESS_RIGHTS,
    CatalogueRecords,
    catalogue_graph,
    dataset_graph,
    ontology_iri,
)
from genofed.catalogue.router import build_router, negotiate, serialize

__all__ = ["ACCESS_RIGHTS", "CatalogueRecords", "build_router", "catalogue_graph",
           "dataset_graph", "negotiate", "ontology_iri", "serialize"]
