"""Genotypes for a simulated cohort: a coalescent simulation and its bgzipped, indexed VCF.

The ancestry comes from stdpopsim's human catalogue (HomSap, the OutOfAfrica_3G09 model of YRI, CEU
and CHB) run on msprime, over the start of chr20 with the chromosome's mean recombination rate, so
nothing is downloaded. The VCF text is produced straight from the genotype arrays, a chunk of sites
at a time, because the benchmark cohort is about a gigabyte of text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msprime
import numpy as np
import numpy.typing as npt
import pysam
import stdpopsim
import tskit

from genofed.formats.bgzf import BgzfWriter

SPECIES_ID = "HomSap"
MODEL_ID = "OutOfAfrica_3G09"
CHROMOSOME = "chr20"
#: The same chromosome as VCF CHROM, GRCh38/Ensembl style (stdpopsim's HomSap genome is GRCh38).
VCF_CHROM = "20"
#: Allele indices this many or more cannot occur under the 4-letter mutation model and are not
#: given a fast-path text encoding.
_MAX_ALLELES = 10
#: Sites per formatting chunk are chosen so one chunk of genotypes stays around this many bytes.
_CHUNK_GENOTYPES = 8_000_000

ProgressCallback = Callable[[str, float], None]


def population_names() -> list[str]:
    """The populations of the demographic model, in its own order (YRI, CEU, CHB)."""
    model = stdpopsim.get_species(SPECIES_ID).get_demographic_model(MODEL_ID)
    return [population.name for population in model.populations]


def contig_length_limit() -> int:
    """chr20's length: the simulated region starts at its first base and cannot extend past it."""
    return int(stdpopsim.get_species(SPECIES_ID).get_contig(CHROMOSOME).length)


def population_label(individuals_per_population: Mapping[str, int]) -> str:
    """The populations sampled, in the model's order, joined by "+" ("CEU", "YRI+CEU")."""
    return "+".join(name for name in population_names() if name in individuals_per_population)


def in_model_order(individuals_per_population: Mapping[str, int]) -> dict[str, int]:
    """The same counts keyed in the model's population order, which is the order msprime gives
    the individuals (whatever order the mapping lists them in)."""
    return {name: individuals_per_population[name] for name in population_names()
            if name in individuals_per_population}


@dataclass(frozen=True, slots=True)
class Ancestry:
    """A simulated tree sequence and the parameters it came from."""

    tree_sequence: tskit.TreeSequence
    #: The populations sampled, as `population_label` writes them.
    population: str
    length_bp: int
    mutation_rate: float
    recombination_rate: float
    #: Individuals sampled per population, in the model's order.
    individuals_per_population: tuple[tuple[str, int], ...] = ()

    def provenance(self) -> dict[str, object]:
        # A one-population simulation's provenance stays as it was before mixes existed, so
        # its truth.json (and every cohort simulated before) is unchanged.
        mix: dict[str, object] = (
            {"individuals_per_population": dict(self.individuals_per_population)}
            if len(self.individuals_per_population) > 1 else {})
        return {
            "species": SPECIES_ID,
            "demographic_model": MODEL_ID,
            "engine": "msprime",
            "population": self.population,
            **mix,
            "chromosome": CHROMOSOME,
            "region": {"start": 1, "end": self.length_bp},
            "mutation_rate": self.mutation_rate,
            "recombination_rate": self.recombination_rate,
            "recombination_map": "uniform (chromosome mean; no genetic map)",
            "mutation_model": "JC69 on a discrete genome",
            "versions": {"stdpopsim": stdpopsim.__version__, "msprime": msprime.__version__,
                         "tskit": tskit.__version__},
        }


def simulate_ancestry(*, individuals_per_population: Mapping[str, int], length_bp: int,
                      seed: int) -> Ancestry:
    """Simulate diploid people over chr20:1-length_bp: as many from each population of the model
    as `individuals_per_population` says, all in one history (one set of genealogies), so they
    share variants as real populations do. Individuals come in the model's population order."""
    species = stdpopsim.get_species(SPECIES_ID)
    model = species.get_demographic_model(MODEL_ID)
    contig = species.get_contig(CHROMOSOME, left=0, right=length_bp,
                                mutation_rate=model.mutation_rate)
    engine = stdpopsim.get_engine("msprime")
    counts = in_model_order(individuals_per_population)
    tree_sequence = engine.simulate(model, contig, counts, seed=seed)
    rates = contig.recombination_map.rate
    recombination_rate = float(rates[0]) if len(rates) else 0.0
    return Ancestry(tree_sequence, population_label(counts), length_bp,
                    float(model.mutation_rate), recombination_rate, tuple(counts.items()))


def individual_populations(tree_sequence: tskit.TreeSequence) -> list[str]:
    """Each individual's population name, in the order of `individual_sample_nodes`."""
    names = [population.metadata["name"] for population in tree_sequence.populations()]
    return [names[index] for index in tree_sequence.individuals_population]


@dataclass(frozen=True, slots=True)
class SiteTable:
    """Per VCF record: position, alleles and how many haplotypes carry the first ALT allele."""

    positions: npt.NDArray[np.int64]
    alleles: list[tuple[str, ...]]
    first_alt_counts: npt.NDArray[np.int64]
    haplotypes: int

    @property
    def records(self) -> int:
        return len(self.alleles)


def _genotype_text_tables() -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Lookup tables from a diploid call to its 4 bytes of VCF text.

    The two int8 allele indices of an individual, read together as one native uint16, index the
    tables; the first gives "a|b\\t", the second "a|b\\n" for the last call of a line. Reading
    4-byte words through a 64 K-entry table is several times faster than gathering byte rows.
    """
    separated = np.zeros(1 << 16, dtype=np.uint32)
    line_end = np.zeros(1 << 16, dtype=np.uint32)
    for first in range(_MAX_ALLELES):
        for second in range(_MAX_ALLELES):
            key = np.array([first, second], dtype=np.uint8).view(np.uint16)[0]
            separated[key] = np.frombuffer(f"{first}|{second}\t".encode(), dtype=np.uint32)[0]
            line_end[key] = np.frombuffer(f"{first}|{second}\n".encode(), dtype=np.uint32)[0]
    missing = np.array([-1, -1], dtype=np.int8).view(np.uint16)[0]  # a call made missing
    separated[missing] = np.frombuffer(b"./.\t", dtype=np.uint32)[0]
    line_end[missing] = np.frombuffer(b"./.\n", dtype=np.uint32)[0]
    return separated, line_end


def individual_sample_nodes(tree_sequence: tskit.TreeSequence) -> npt.NDArray[np.int32]:
    """Sample nodes ordered individual by individual, each individual's two haplotypes adjacent."""
    nodes = tree_sequence.individuals_nodes
    if nodes.ndim != 2 or nodes.shape[1] != 2 or (nodes < 0).any():
        raise ValueError("expected every simulated individual to be diploid")
    return np.asarray(nodes.reshape(-1), dtype=np.int32)


def vcf_header(*, sample_names: Sequence[str], contig_length: int, source: str) -> bytes:
    lines = [
        "##fileformat=VCFv4.2",
        f"##source={source}",
        f"##contig=<ID={VCF_CHROM},length={contig_length},assembly=GRCh38>",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Phased genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                   *sample_names]),
    ]
    return ("\n".join(lines) + "\n").encode()


def write_vcf(ancestry: Ancestry, path: Path, *, sample_names: Sequence[str], source: str,
              threads: int = 1, progress: ProgressCallback | None = None,
              missing_rate: float = 0.0,
              missing_rng: np.random.Generator | None = None) -> SiteTable:
    """Write the genotypes as a record-aligned BGZF VCF with a tabix index beside it.

    Every site of the tree sequence becomes one record (multi-allelic ones included), REF being
    the ancestral allele; POS is the 0-based site position plus one. With `missing_rate`, that
    share of calls (drawn with `missing_rng`) is written missing (`./.`), as genotyping leaves
    some in real cohorts; allele counts of the returned table are those of the full calls.
    """
    if missing_rate and missing_rng is None:
        raise ValueError("missing_rate needs missing_rng (a seeded generator)")
    tree_sequence = ancestry.tree_sequence
    nodes = individual_sample_nodes(tree_sequence)
    if len(sample_names) * 2 != len(nodes):
        raise ValueError(f"{len(sample_names)} sample names for {len(nodes) // 2} individuals")
    site_positions = tree_sequence.sites_position
    if not np.array_equal(site_positions, np.floor(site_positions)):
        raise ValueError("site positions are not whole numbers; simulate on a discrete genome")
    positions = site_positions.astype(np.int64) + 1
    total_sites = len(positions)
    first_alt_counts = np.zeros(total_sites, dtype=np.int64)
    alleles: list[tuple[str, ...]] = []
    formatter = _ChunkFormatter(len(nodes), missing_rate, missing_rng)

    # Passing the default sample list explicitly would make tskit remap every genotype.
    default_order = np.array_equal(nodes, tree_sequence.samples())
    variants = tree_sequence.variants(samples=None if default_order else nodes, copy=False)
    with BgzfWriter(path, threads=threads) as writer:
        writer.write_record(vcf_header(sample_names=sample_names,
                                       contig_length=int(tree_sequence.sequence_length),
                                       source=source))
        chunk_start = 0
        for site_index, variant in enumerate(variants):
            site_alleles = tuple(str(allele) for allele in variant.alleles if allele is not None)
            if len(site_alleles) > _MAX_ALLELES:
                raise ValueError(f"site at POS {positions[site_index]} has {len(site_alleles)} "
                                 f"alleles; at most {_MAX_ALLELES} are supported")
            alleles.append(site_alleles)
            if formatter.add(variant.genotypes):
                stop = site_index + 1
                formatter.flush(writer, positions[chunk_start:stop], alleles[chunk_start:stop],
                                first_alt_counts[chunk_start:stop])
                chunk_start = stop
                if progress is not None:
                    progress("vcf", chunk_start / total_sites)
        formatter.flush(writer, positions[chunk_start:], alleles[chunk_start:],
                        first_alt_counts[chunk_start:])
    if progress is not None:
        progress("vcf", 1.0)
        progress("index", 0.0)
    # The file is already BGZF, so pysam only builds the index; it does not recompress.
    pysam.tabix_index(str(path), preset="vcf", force=True, keep_original=True)
    if progress is not None:
        progress("index", 1.0)
    return SiteTable(positions, alleles, first_alt_counts, len(nodes))


class _ChunkFormatter:
    """Collects the genotypes of consecutive sites and turns them into VCF lines in bulk."""

    def __init__(self, haplotypes: int, missing_rate: float = 0.0,
                 missing_rng: np.random.Generator | None = None) -> None:
        self._missing_rate = missing_rate
        self._missing_rng = missing_rng
        self._rows = max(1, _CHUNK_GENOTYPES // haplotypes)
        self._genotypes = np.empty((self._rows, haplotypes), dtype=np.int8)
        self._filled = 0
        self._separated, self._line_end = _genotype_text_tables()

    def add(self, genotypes: npt.NDArray[np.int32]) -> bool:
        """Buffer one site's genotypes; True when the chunk is full and must be flushed."""
        self._genotypes[self._filled] = genotypes
        self._filled += 1
        return self._filled == self._rows

    def flush(self, writer: BgzfWriter, positions: npt.NDArray[np.int64],
              alleles: Sequence[tuple[str, ...]],
              first_alt_counts_out: npt.NDArray[np.int64]) -> None:
        genotypes = self._genotypes[: self._filled]
        self._filled = 0
        if len(genotypes) == 0:
            return
        if genotypes.min() < 0:
            raise ValueError("missing genotypes are not expected in a simulation")
        first_alt_counts_out[:] = np.count_nonzero(genotypes == 1, axis=1)
        if self._missing_rate and self._missing_rng is not None:
            calls_missing = self._missing_rng.random(
                (len(genotypes), genotypes.shape[1] // 2)) < self._missing_rate
            genotypes[np.repeat(calls_missing, 2, axis=1)] = -1
        pairs = genotypes.view(np.uint16)  # one individual's two allele bytes as one key
        calls = self._separated[pairs]
        calls[:, -1] = self._line_end[pairs[:, -1]]
        for row, (position, site_alleles) in enumerate(zip(positions, alleles, strict=True)):
            alt = ",".join(site_alleles[1:]) or "."
            prefix = f"{VCF_CHROM}\t{position}\t.\t{site_alleles[0]}\t{alt}\t.\tPASS\t.\tGT\t"
            writer.write_record(prefix.encode() + calls[row].tobytes())
