"""A node's gene table: BED (chrom, 0-based start, end, name[, ...]) -> `genes.parquet`.

With it the Beacon answers `geneId` queries (the variants overlapping the gene's span). The name
column may hold several names separated by `|` (e.g. `BRCA1|HGNC:1100|ENSG00000012048`); any of
them finds the gene, case-insensitively. BED track/browser/comment lines are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from genofed.errors import InputError

SCHEMA = pa.schema([("name", pa.string()), ("contig", pa.string()), ("start", pa.int64()),
                    ("end", pa.int64()), ("aliases", pa.list_(pa.string()))])


def load_gene_table(path: Path) -> pa.Table:
    """Parse a BED gene table; errors name the file, line and column at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read the gene table: {exc}") from None
    rows: dict[str, list[object]] = {name: [] for name in SCHEMA.names}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t")
        if len(fields) < 4:
            raise InputError(str(path), "a gene table line needs 4 tab-separated columns: "
                             "chrom, start (0-based), end, name", line=number)
        contig, start_text, end_text, names = fields[:4]
        try:
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise InputError(str(path), f"start/end must be integers, got {start_text!r}, "
                             f"{end_text!r}", line=number, field="start/end") from None
        if not 0 <= start < end:
            raise InputError(str(path), f"need 0 <= start < end, got {start}-{end}",
                             line=number, field="start/end")
        aliases = [n.strip() for n in names.split("|") if n.strip()]
        if not contig or not aliases:
            raise InputError(str(path), "empty chrom or name", line=number)
        for key, value in (("name", aliases[0]), ("contig", contig), ("start", start),
                           ("end", end), ("aliases", aliases)):
            rows[key].append(value)
    if not rows["name"]:
        raise InputError(str(path), "the gene table has no genes")
    return pa.table(rows, schema=SCHEMA)
