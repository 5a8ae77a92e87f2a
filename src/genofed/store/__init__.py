"""The node's data: variant sites, genotypes, individuals and dataset metadata.

    store = NodeStore.open("node/")
    ds = store.dataset("fi-cohort")
    ds.sites_at("20", 14370); ds.sites_in_range("chr20", 1, 2_000_000)
    ds.genotype_block(slice(0, 1000), samples=["S1", "S2"])
    ds.select_individuals(sex="female", hpo="HP:0001250")
"""

from genofed.errors import UnknownDatasetError
from genofed.store.dataset import Dataset, GenotypeBlock
from genofed.store.metadata import AccessTier, DatasetMetadata
from genofed.store.node import NodeStore
from genofed.store.sites import normalize_contig

__all__ = ["AccessTier", "Dataset", "DatasetMetadata", "GenotypeBlock", "NodeStore",
           "UnknownDatasetError", "normalize_contig"]
