"""Variant request parameters -> matching rows of a dataset's sites table.

Beacon coordinates are 0-based: `start` is the first base (inclusive), `end` is exclusive, so a
VCF record at POS p with REF r spans start = p - 1, end = p - 1 + len(r). Query kinds:

* sequence: referenceName + start (one value) [+ referenceBases] [+ alternateBases]
* range:    referenceName + start + end (one value each); overlap semantics
* bracket:  referenceName + start [min, max] + end [min, max]; start and end within the brackets
* contig:   referenceName alone (all variants on it)

* gene:     geneId (symbol or id from the gene table given at ingest): variants overlapping it

`alternateBases: "N"` matches any base at that position. `geneId` on a node without a gene
table, and the other annotation-based parameters, get an "unsupported" error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genofed.errors import BeaconRequestError, UnsupportedQueryError
from genofed.store.dataset import Dataset
from genofed.store.sites import normalize_contig

MAX_POSITION = 2**31 - 2
_STANDARD_CONTIGS = {str(i) for i in range(1, 23)} | {"X", "Y", "MT"}
_REFSEQ = re.compile(r"^(?:refseq:)?NC_0000(?P<n>\d\d)\.\d+$", re.IGNORECASE)
_BASES = re.compile(r"^[ACGTUNRYSWKMBDHV.\-]*$", re.IGNORECASE)
_SYMBOLIC = re.compile(r"^<[A-Za-z0-9:_.*-]+>$")

KNOWN_PARAMETERS = {
    "referenceName", "start", "end", "referenceBases", "alternateBases", "variantType",
    "assemblyId", "geneId", "geneid", "aminoacidChange", "genomicAlleleShortForm", "allele",
    "variantMinLength", "variantMaxLength", "mateName", "datasets", "datasetIds",
}
_UNSUPPORTED = {
    "aminoacidChange": "aminoacidChange queries need variant annotation; this node has none",
    "genomicAlleleShortForm": "genomicAlleleShortForm (HGVS) queries are not supported; use "
                              "referenceName/start/referenceBases/alternateBases",
    "allele": "genomicAlleleShortForm (HGVS) queries are not supported; use "
              "referenceName/start/referenceBases/alternateBases",
    "mateName": "mateName (fusion/breakend) queries are not supported on this node",
}

# variantType synonyms (VCF-style and Sequence Ontology ids) -> classes matched.
_TYPE_CLASSES: dict[str, set[str]] = {
    "SNP": {"SNP"}, "SNV": {"SNP"}, "SO:0001483": {"SNP"}, "SO:0000694": {"SNP"},
    "MNP": {"MNP"}, "MNV": {"MNP"}, "SO:0002007": {"MNP"},
    "DEL": {"DEL"}, "DELETION": {"DEL"}, "SO:0000159": {"DEL"},
    "INS": {"INS"}, "INSERTION": {"INS"}, "SO:0000667": {"INS"},
    "INDEL": {"DEL", "INS", "INDEL"}, "DELINS": {"INDEL"}, "SO:1000032": {"INDEL"},
    "DUP": {"DUP"}, "SO:1000035": {"DUP"}, "INV": {"INV"}, "SO:1000036": {"INV"},
    "CNV": {"CNV", "DUP", "DEL_SV"}, "SO:0001019": {"CNV", "DUP", "DEL_SV"},
    "BND": {"BND"}, "SO:0000199": {"BND"}, "SV": {"DEL_SV", "DUP", "INV", "CNV", "BND", "INS_SV"},
}


@dataclass(frozen=True)
class VariantQuery:
    reference_name: str | None = None
    start: tuple[int, ...] = ()
    end: tuple[int, ...] = ()
    reference_bases: str | None = None
    alternate_bases: str | None = None
    variant_type: str | None = None
    assembly_id: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    gene_id: str | None = None

    @property
    def active(self) -> bool:
        return any(v not in (None, ()) for v in (
            self.reference_name, self.start, self.reference_bases, self.alternate_bases,
            self.variant_type, self.min_length, self.max_length, self.gene_id))

    @property
    def kind(self) -> str:
        if self.gene_id is not None:
            return "gene"
        if self.reference_name is None:
            return "none"
        if len(self.start) == 2:
            return "bracket"
        if self.start and self.end:
            return "range"
        if self.start:
            return "sequence"
        return "contig"


def _ints(name: str, value: Any) -> tuple[int, ...]:
    items: Iterable[Any]
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = [v for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = value
    else:
        items = [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            raise BeaconRequestError(f"{name}: {item!r} is not an integer position")
        try:
            number = int(item) if not isinstance(item, float) or item.is_integer() else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise BeaconRequestError(f"{name}: {item!r} is not an integer position")
        if not 0 <= number <= MAX_POSITION:
            raise BeaconRequestError(f"{name}: {number} is outside 0..{MAX_POSITION} (0-based)")
        out.append(number)
    if len(out) > 2:
        raise BeaconRequestError(f"{name}: at most two values (a bracket), got {len(out)}")
    return tuple(out)


def _text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int):
        raise BeaconRequestError(f"{name}: expected a string, got {type(value).__name__}")
    return str(value).strip()


def reference_name(text: str, known: set[str]) -> str:
    """Normalize a referenceName ('chr20', '20', 'NC_000020.11'); 400 if no such contig."""
    refseq = _REFSEQ.match(text)
    if refseq:
        number = int(refseq["n"])
        text = {23: "X", 24: "Y"}.get(number, str(number))
    name = normalize_contig(text)
    if name not in known and name not in _STANDARD_CONTIGS:
        listing = ", ".join(sorted(known)) or "none"
        raise BeaconRequestError(f"referenceName {text!r} is not a reference sequence this node "
                                 f"knows (its data covers: {listing}; 'chr' prefixes optional)")
    return name


def parse_variant_query(params: Mapping[str, Any], known_contigs: set[str]) -> VariantQuery:
    for key, message in _UNSUPPORTED.items():
        if params.get(key) not in (None, ""):
            raise UnsupportedQueryError(message)
    start = _ints("start", params.get("start"))
    end = _ints("end", params.get("end"))
    ref_name = _text("referenceName", params.get("referenceName"))
    if (start or end) and ref_name is None:
        raise BeaconRequestError("start/end need a referenceName (e.g. referenceName=20)")
    if end and not start:
        raise BeaconRequestError("end was given without start")
    if len(start) != len(end) and end:
        raise BeaconRequestError("a bracket query needs two start and two end values "
                                 "(start=min,max&end=min,max); a range query one of each")
    if len(start) == 2 and not end:
        raise BeaconRequestError("a bracket query needs end=min,max as well")
    if len(start) == 2 and (start[0] > start[1] or end[0] > end[1]):
        raise BeaconRequestError("bracket bounds must be ordered: start=min,max&end=min,max")
    if len(start) == 1 and len(end) == 1 and start[0] > end[0]:
        raise BeaconRequestError(f"start ({start[0]}) is greater than end ({end[0]})")
    if len(start) == 1 and len(end) == 1 and start[0] == end[0]:
        raise BeaconRequestError(f"end ({end[0]}) must be greater than start; Beacon ranges are "
                                 f"0-based, end exclusive")
    ref_bases = _text("referenceBases", params.get("referenceBases"))
    alt_bases = _text("alternateBases", params.get("alternateBases"))
    for name, bases in (("referenceBases", ref_bases), ("alternateBases", alt_bases)):
        if bases is not None and not (_BASES.match(bases) or _SYMBOLIC.match(bases)):
            raise BeaconRequestError(f"{name}: {bases!r} is not a sequence of IUPAC bases or "
                                     f"a symbolic allele like <DEL>")
        if bases is not None and len(bases) > 10_000:
            raise BeaconRequestError(f"{name}: longer than 10000 bases")
    variant_type = _text("variantType", params.get("variantType"))
    if variant_type is not None and variant_type.upper() not in _TYPE_CLASSES:
        raise BeaconRequestError(f"variantType {variant_type!r} is not supported; use one of "
                                 f"{', '.join(sorted(k for k in _TYPE_CLASSES if ':' not in k))} "
                                 f"or their Sequence Ontology ids")
    min_length = _ints("variantMinLength", params.get("variantMinLength"))
    max_length = _ints("variantMaxLength", params.get("variantMaxLength"))
    gene_id = _text("geneId", params.get("geneId", params.get("geneid")))
    if gene_id is not None and (ref_name or start):
        raise BeaconRequestError("geneId already names a region: give either geneId or "
                                 "referenceName/start/end, not both")
    return VariantQuery(
        gene_id=gene_id,
        reference_name=reference_name(ref_name, known_contigs) if ref_name else None,
        start=start, end=end,
        reference_bases=ref_bases.upper() if ref_bases and ref_bases != "." else None,
        alternate_bases=alt_bases.upper() if alt_bases and not alt_bases.startswith("<")
        else alt_bases,
        variant_type=variant_type.upper() if variant_type else None,
        assembly_id=_text("assemblyId", params.get("assemblyId")),
        min_length=min_length[0] if min_length else None,
        max_length=max_length[0] if max_length else None,
    )


def same_assembly(a: str, b: str) -> bool:
    def canon(x: str) -> str:
        x = x.strip().lower()
        return {"hg38": "grch38", "hg19": "grch37", "b37": "grch37"}.get(x, x.split(".")[0])

    return canon(a) == canon(b)


def variant_classes(ref: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """Per row: SNP, MNP, DEL, INS, INDEL, or for symbolic alleles DEL_SV/INS_SV/DUP/INV/CNV/BND."""
    out = np.empty(len(ref), dtype=object)
    for i, (r, a) in enumerate(zip(ref, alt, strict=True)):
        if a.startswith("<"):
            kind = a[1:-1].split(":")[0].upper()
            out[i] = {"DEL": "DEL_SV", "INS": "INS_SV"}.get(kind, kind)
        elif "[" in a or "]" in a:
            out[i] = "BND"
        elif len(r) == len(a):
            out[i] = "SNP" if len(r) == 1 else "MNP"
        elif len(a) < len(r):
            out[i] = "DEL" if a and r.startswith(a) else "INDEL"
        else:
            out[i] = "INS" if r and a.startswith(r) else "INDEL"
    return out


def beacon_variant_type(cls: str) -> str:
    return {"DEL_SV": "DEL", "INS_SV": "INS"}.get(cls, cls)


def match_sites(dataset: Dataset, query: VariantQuery) -> pa.Table:
    """Rows of the dataset's sites table that match (alleles with AC = 0 are not present)."""
    if query.assembly_id and not same_assembly(query.assembly_id, dataset.metadata.assembly_id):
        return dataset.site_table(slice(0, 0))
    kind = query.kind
    if kind == "gene":
        spans = dataset.gene_spans(query.gene_id or "")
        tables = [dataset.sites_in_range(contig, start + 1, end) for contig, start, end in spans]
        table = pa.concat_tables(tables) if tables else dataset.site_table(slice(0, 0))
        return _refine(table, query)
    if kind in ("sequence", "range"):
        contig = query.reference_name or ""
        if kind == "sequence":
            lo, hi, mask = dataset.site_rows(contig, query.start[0] + 1)
        else:
            lo, hi, mask = dataset.site_rows(contig, query.start[0] + 1, query.end[0])
        if hi - lo <= _FEW_ROWS:
            return _few_rows(dataset, np.arange(lo, hi)[mask], query)
    if kind == "none":
        table = dataset.sites
    else:
        contig = query.reference_name or ""
        if kind == "sequence":
            table = dataset.sites_at(contig, query.start[0] + 1)
        elif kind == "range":
            table = dataset.sites_in_range(contig, query.start[0] + 1, query.end[0])
        elif kind == "bracket":
            table = dataset.sites_in_range(contig, query.start[0] + 1, max(query.end[1], 1))
            pos0 = pc.subtract(table.column("pos"), 1)
            keep = pc.and_(
                pc.and_(pc.greater_equal(pos0, query.start[0]),
                        pc.less_equal(pos0, query.start[1])),
                pc.and_(pc.greater_equal(table.column("end"), query.end[0]),
                        pc.less_equal(table.column("end"), query.end[1])))
            table = table.filter(keep)
        else:
            table = dataset.sites_in_range(contig, 1, MAX_POSITION)
    return _refine(table, query)


def _refine(table: pa.Table, query: VariantQuery) -> pa.Table:
    """Drop absent alleles, then apply the allele and variant type/length parameters."""
    if table.num_rows == 0:
        return table
    table = table.filter(pc.greater(table.column("ac"), 0))
    if query.reference_bases:
        table = table.filter(_bases_match(table.column("ref"), query.reference_bases))
    if query.alternate_bases:
        table = table.filter(_bases_match(table.column("alt"), query.alternate_bases))
    if table.num_rows and (query.variant_type or query.min_length or query.max_length):
        table = _filter_by_type(table, query)
    return table


def _filter_by_type(table: pa.Table, query: VariantQuery) -> pa.Table:
    ref = np.asarray(table.column("ref").to_pylist(), dtype=object)
    alt = np.asarray(table.column("alt").to_pylist(), dtype=object)
    classes = variant_classes(ref, alt)
    keep = np.ones(table.num_rows, dtype=bool)
    if query.variant_type:
        wanted = _TYPE_CLASSES[query.variant_type]
        keep &= np.fromiter((c in wanted for c in classes), dtype=bool, count=len(classes))
    if query.min_length or query.max_length:
        span = (table.column("end").to_numpy() - table.column("pos").to_numpy() + 1)
        lengths = np.where([c in {"SNP", "MNP", "DEL", "INS", "INDEL"} for c in classes],
                           [max(len(r), len(a)) for r, a in zip(ref, alt, strict=True)], span)
        if query.min_length:
            keep &= lengths >= query.min_length
        if query.max_length:
            keep &= lengths <= query.max_length
    table = table.filter(pa.array(keep))
    return table


#: Up to this many candidate rows, filters run on the mapped columns row by row (a point query
#: costs microseconds); larger ranges use Arrow kernels.
_FEW_ROWS = 256


def _few_rows(dataset: Dataset, rows: np.ndarray, query: VariantQuery) -> pa.Table:
    rows = rows[dataset.site_column("ac")[rows] > 0]
    for column, bases in (("ref", query.reference_bases), ("alt", query.alternate_bases)):
        if bases and len(rows):
            values = dataset.site_strings(column)[rows]
            if "N" not in bases or bases.startswith("<"):
                rows = rows[values == bases]
            else:
                pattern = re.compile(re.escape(bases).replace("N", "[ACGTN]"))
                rows = rows[[pattern.fullmatch(v) is not None for v in values]]
    table = dataset.site_table(rows)
    if table.num_rows and (query.variant_type or query.min_length or query.max_length):
        return _filter_by_type(table, query)
    return table


def _bases_match(column: pa.ChunkedArray, bases: str) -> pa.ChunkedArray:
    if "N" not in bases or bases.startswith("<"):
        return pc.equal(column, bases)
    pattern = "^" + re.escape(bases).replace("N", "[ACGTN]") + "$"
    return pc.match_substring_regex(column, pattern)


# -- variant ids -------------------------------------------------------------------------------
def variant_id(assembly: str, contig: str, pos: int, ref: str, alt: str) -> str:
    """Stable id: `{assembly}:{contig}:{pos}:{ref}:{alt}` (VCF 1-based POS, contig without chr)."""
    return f"{assembly}:{normalize_contig(contig)}:{pos}:{ref}:{alt}"


def parse_variant_id(text: str, known_contigs: set[str]) -> VariantQuery:
    parts = text.split(":", 4)
    if len(parts) != 5 or not parts[2].isdigit() or not parts[3] or not parts[4]:
        raise BeaconRequestError(f"{text!r} is not a variant id of this node; ids look like "
                                 f"'GRCh38:20:12345:A:G' (assembly:contig:pos:ref:alt)")
    assembly, contig, pos, ref, alt = parts
    position = int(pos)
    if not 1 <= position <= MAX_POSITION:
        raise BeaconRequestError(f"{text!r}: position out of range")
    return VariantQuery(reference_name=reference_name(contig, known_contigs),
                        start=(position - 1,), reference_bases=ref, alternate_bases=alt,
                        assembly_id=assembly)


def carriers(dataset: Dataset, rows: pa.Table) -> np.ndarray:
    """Per individual (in `dataset.samples` order): carries any allele of `rows`."""
    n = dataset.manifest.n_samples
    if rows.num_rows == 0:
        return np.zeros(n, dtype=bool)
    variant_indexes = rows.column("variant_index").to_numpy()
    alleles = rows.column("allele_index").to_numpy().astype(np.int8)
    result = np.zeros(n, dtype=bool)
    step = 20_000
    for lo in range(0, len(variant_indexes), step):
        block = dataset.genotype_block(variant_indexes[lo:lo + step])
        hits = (block.calls == alleles[lo:lo + step, None, None]).any(axis=2)
        result |= hits.any(axis=0)
    return result


def carried_by(dataset: Dataset, rows: pa.Table, sample_mask: np.ndarray) -> np.ndarray:
    """Per row: how many individuals selected by `sample_mask` carry the row's allele."""
    if rows.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    columns = np.flatnonzero(sample_mask)
    samples = [dataset.samples[i] for i in columns]
    variant_indexes = rows.column("variant_index").to_numpy()
    alleles = rows.column("allele_index").to_numpy().astype(np.int8)
    out = np.zeros(len(variant_indexes), dtype=np.int64)
    if not samples:
        return out
    step = 20_000
    for lo in range(0, len(variant_indexes), step):
        block = dataset.genotype_block(variant_indexes[lo:lo + step], samples)
        hits = (block.calls == alleles[lo:lo + step, None, None]).any(axis=2)
        out[lo:lo + step] = hits.sum(axis=1)
    return out
