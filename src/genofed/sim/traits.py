"""Planting two traits on simulated genotypes: LDL cholesterol and a seizure disorder.

Both traits are additive in the ALT-allele dosage of a few common causal variants (ALT frequency
in the cohort between 5 % and 95 %, biallelic), plus Gaussian noise:

* quantitative: z = g + e with Var(g) = h2 = 0.4 in the cohort and e ~ N(0, 1 - h2); reported as
  LDL cholesterol = 130 + 30 z mg/dL, rounded to 0.1 mg/dL;
* binary: the same construction on a liability scale (h2 = 0.5); an individual is a case when the
  liability exceeds the standard normal quantile that leaves 25 % above it (liability-threshold
  model), so the expected prevalence is 25 %.

The genetic values are scaled with the cohort's own variance, so the stated heritability is the
share of variance the causal variants explain in exactly this cohort. Causal variants are picked one
per stretch of the common sites, so they are spread along the region rather than in one LD block,
and the two traits never share one. Nothing depends on sex or age.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import tskit

from genofed.sim.genotypes import VCF_CHROM, SiteTable

QUANTITATIVE_CAUSAL = 5
BINARY_CAUSAL = 4
QUANTITATIVE_HERITABILITY = 0.4
BINARY_HERITABILITY = 0.5
BINARY_PREVALENCE = 0.25
LDL_MEAN_MG_DL = 130.0
LDL_SD_MG_DL = 30.0
#: LDL at or above this is "high" in clinical guidelines; such individuals get HP:0003141.
HIGH_LDL_MG_DL = 160.0
MIN_ALT_FREQUENCY = 0.05
#: Keeps a simulated LDL positive even in a far tail (the mean is > 4 SD above zero anyway).
_MIN_LDL_MG_DL = 1.0


@dataclass(frozen=True, slots=True)
class CausalVariant:
    site_index: int
    chrom: str
    pos: int
    ref: str
    alt: str
    effect: float
    alt_allele_frequency: float

    def as_dict(self) -> dict[str, object]:
        return {"chrom": self.chrom, "pos": self.pos, "ref": self.ref, "alt": self.alt,
                "effect": self.effect, "alt_allele_frequency": self.alt_allele_frequency}


@dataclass(frozen=True, slots=True)
class PlantedTraits:
    """Causal variants and per-individual values of both traits (individuals in VCF order)."""

    quantitative_causal: tuple[CausalVariant, ...]
    binary_causal: tuple[CausalVariant, ...]
    ldl_mg_dl: npt.NDArray[np.float64]
    is_case: npt.NDArray[np.bool_]
    liability_threshold: float


def _alt_dosages(tree_sequence: tskit.TreeSequence, site_indices: list[int],
                 samples: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
    """Individuals x variants matrix of ALT allele counts (0, 1, 2) at the chosen sites."""
    variant = tskit.Variant(tree_sequence, samples=samples)
    dosages = np.empty((len(samples) // 2, len(site_indices)), dtype=np.float64)
    for column, site_index in enumerate(site_indices):
        variant.decode(site_index)
        carries_alt = (variant.genotypes == 1).astype(np.float64)
        dosages[:, column] = carries_alt[0::2] + carries_alt[1::2]
    return dosages


def _choose_causal_sites(sites: SiteTable, count: int,
                         rng: np.random.Generator) -> list[int]:
    frequencies = sites.first_alt_counts / sites.haplotypes
    biallelic = np.fromiter((len(alleles) == 2 for alleles in sites.alleles), dtype=bool,
                            count=sites.records)
    eligible = np.flatnonzero(biallelic & (frequencies >= MIN_ALT_FREQUENCY)
                              & (frequencies <= 1 - MIN_ALT_FREQUENCY))
    if len(eligible) < count:
        raise ValueError(f"only {len(eligible)} common biallelic variants were simulated, "
                         f"{count} are needed as causal variants; simulate a longer region "
                         "(length_mb) or more samples")
    stretches = np.array_split(eligible, count)
    return sorted(int(rng.choice(stretch)) for stretch in stretches)


def _genetic_values(dosages: npt.NDArray[np.float64], heritability: float,
                    rng: np.random.Generator) -> tuple[npt.NDArray[np.float64],
                                                       npt.NDArray[np.float64]]:
    """Centred genetic values with variance `heritability`, and the per-allele effects."""
    # Effects of a similar size (0.5-1 in raw units, random sign), so every causal variant is
    # findable rather than one dominating.
    raw_effects = rng.uniform(0.5, 1.0, dosages.shape[1]) * rng.choice([-1.0, 1.0],
                                                                       dosages.shape[1])
    raw_values = dosages @ raw_effects
    spread = raw_values.std()
    if spread == 0:
        raise ValueError("the causal variants do not vary in this cohort; use more samples")
    scale = np.sqrt(heritability) / spread
    return (raw_values - raw_values.mean()) * scale, raw_effects * scale


def plant_traits(tree_sequence: tskit.TreeSequence, sites: SiteTable,
                 samples: npt.NDArray[np.int32], rng: np.random.Generator) -> PlantedTraits:
    chosen = _choose_causal_sites(sites, QUANTITATIVE_CAUSAL + BINARY_CAUSAL, rng)
    shuffled = [chosen[i] for i in rng.permutation(len(chosen))]
    quantitative_sites = sorted(shuffled[:QUANTITATIVE_CAUSAL])
    binary_sites = sorted(shuffled[QUANTITATIVE_CAUSAL:])
    individuals = len(samples) // 2

    dosages = _alt_dosages(tree_sequence, quantitative_sites, samples)
    genetic, effects = _genetic_values(dosages, QUANTITATIVE_HERITABILITY, rng)
    noise = rng.normal(0.0, np.sqrt(1 - QUANTITATIVE_HERITABILITY), individuals)
    ldl = np.maximum(np.round(LDL_MEAN_MG_DL + LDL_SD_MG_DL * (genetic + noise), 1),
                     _MIN_LDL_MG_DL)
    quantitative_causal = _describe(sites, quantitative_sites, dosages, effects * LDL_SD_MG_DL)

    dosages = _alt_dosages(tree_sequence, binary_sites, samples)
    genetic, effects = _genetic_values(dosages, BINARY_HERITABILITY, rng)
    liability = genetic + rng.normal(0.0, np.sqrt(1 - BINARY_HERITABILITY), individuals)
    threshold = NormalDist().inv_cdf(1 - BINARY_PREVALENCE)
    binary_causal = _describe(sites, binary_sites, dosages, effects)

    return PlantedTraits(quantitative_causal, binary_causal, ldl, liability > threshold,
                         threshold)


def _describe(sites: SiteTable, site_indices: list[int], dosages: npt.NDArray[np.float64],
              effects: npt.NDArray[np.float64]) -> tuple[CausalVariant, ...]:
    frequencies = dosages.mean(axis=0) / 2
    return tuple(
        CausalVariant(site_index=index, chrom=VCF_CHROM, pos=int(sites.positions[index]),
                      ref=sites.alleles[index][0], alt=sites.alleles[index][1],
                      effect=round(float(effect), 6),
                      alt_allele_frequency=round(float(frequency), 6))
        for index, effect, frequency in zip(site_indices, effects, frequencies, strict=True)
    )
