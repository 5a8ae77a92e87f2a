"""Synthetic but realistic cohorts: simulated genotypes, Phenopackets and dataset metadata."""

from genofed.sim.cohort import CohortSummary, simulate_cohort

__all__ = ["CohortSummary", "simulate_cohort"]
