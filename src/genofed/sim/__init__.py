"""Synthetic but realistic cohorts: simulated genotypes, Phenopackets and dataset metadata.

Simulation needs msprime, stdpopsim and tskit, which a node serving real data does not: they
come with the `sim` extra (`pip install 'genofed[sim]'`; `scripts/bootstrap.sh` installs it, as
the demo simulates its cohorts)."""

from genofed.errors import SimulationError

try:
    import msprime  # noqa: F401
    import stdpopsim  # noqa: F401
    import tskit  # noqa: F401
except ImportError as missing:
    raise SimulationError(f"simulating cohorts needs {missing.name}, which is not installed",
                          hint="install the simulation extra: pip install 'genofed[sim]' "
                               "(scripts/bootstrap.sh does)") from None

from genofed.sim.cohort import CohortSummary, read_populations, simulate_cohort
from genofed.sim.split import Share, split_cohort

__all__ = ["CohortSummary", "Share", "read_populations", "simulate_cohort", "split_cohort"]
