"""Genotype-call kernels for ingest, in C (`_calls.c` has the why and the details)."""

from collections.abc import Sequence

import numpy as np

def scan_gt_lines(parts: Sequence[bytes | memoryview], n_samples: int, genotypes: np.ndarray,
                  phased: np.ndarray) -> tuple[int, bytes, bytes, bytes] | None: ...
def decode_calls(text: bytes, starts: np.ndarray, rows: np.ndarray, n_samples: int,
                 genotypes: np.ndarray, phased: np.ndarray) -> list[int]: ...
def count_alleles(genotypes: np.ndarray, n_samples: int, sample_class: np.ndarray,
                  n_classes: int, counts: np.ndarray, allele: int = 1) -> None: ...
