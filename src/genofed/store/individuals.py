"""The individuals table (`individuals.parquet.c4gh`): one row per sample, from Phenopackets (or
just the VCF sample name). It links sample ids to phenotypes, so it is Crypt4GH-encrypted for the
node's key and never lies on disk in plaintext; it is decrypted in memory only.

HPO terms are stored twice: as given (`phenotypes`) and closed under is_a ancestors
(`phenotype_closure`), so that "HP:0001250 and its descendants" is a membership test at query time
and needs no ontology in the serving process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from genofed.formats.crypt4gh import KeyPair, decrypt_stream, encrypt_bytes
from genofed.store import layout
from genofed.store.versions import VersionFiles, as_version

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<mi>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_DAYS_PER_YEAR = 365.25


def iso8601_years(duration: str) -> float:
    """An ISO 8601 duration such as 'P47Y6M' or 'P10W' as a number of years."""
    match = _DURATION.match(duration)
    if not match or duration.endswith("T"):
        raise ValueError(f"{duration!r} is not an ISO 8601 duration such as 'P47Y' or 'P3M2D'")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    days = (parts.get("w", 0.0) * 7 + parts.get("d", 0.0) + parts.get("h", 0.0) / 24
            + parts.get("mi", 0.0) / 1440 + parts.get("s", 0.0) / 86400)
    return parts.get("y", 0.0) + parts.get("mo", 0.0) / 12 + days / _DAYS_PER_YEAR


MEASUREMENT = pa.struct([("assay", pa.string()), ("value", pa.float64()), ("unit", pa.string())])

SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("sample_index", pa.int32()),  # column in the genotype matrix
    ("sex", pa.dictionary(pa.int8(), pa.string())),  # female / male / other / unknown
    ("age_iso", pa.string()),
    ("age_years", pa.float64()),
    ("population", pa.string()),
    ("phenotypes", pa.list_(pa.string())),
    ("excluded_phenotypes", pa.list_(pa.string())),
    ("phenotype_closure", pa.list_(pa.string())),
    ("diseases", pa.list_(pa.string())),
    ("measurements", pa.list_(MEASUREMENT)),
    ("phenopacket", pa.string()),
])


def empty_rows(samples: Sequence[str]) -> dict[str, list[object]]:
    """Columns for samples known only by name."""
    n = len(samples)
    return {
        "sample_id": list(samples),
        "sample_index": list(range(n)),
        "sex": ["unknown"] * n,
        "age_iso": [None] * n,
        "age_years": [None] * n,
        "population": [None] * n,
        "phenotypes": [[] for _ in range(n)],
        "excluded_phenotypes": [[] for _ in range(n)],
        "phenotype_closure": [[] for _ in range(n)],
        "diseases": [[] for _ in range(n)],
        "measurements": [[] for _ in range(n)],
        "phenopacket": [None] * n,
    }


def write(version_dir: Path, rows: dict[str, list[object]], keys: KeyPair) -> None:
    """Write the table (columns as :func:`empty_rows` makes them), encrypted for the node."""
    table = pa.Table.from_pydict(rows, schema=SCHEMA)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    (version_dir / layout.INDIVIDUALS).write_bytes(
        encrypt_bytes(buffer.getvalue().to_pybytes(), keys.public, keys.secret))


def read(version: Path | VersionFiles, secret_key: bytes | None) -> pa.Table:
    """The table of a version, decrypted in memory with the node's secret key."""
    stored = as_version(version)
    name = f"{stored.location}/{layout.INDIVIDUALS}"
    encrypted = stored.read_optional(layout.INDIVIDUALS)
    if encrypted is None:  # versions written before the table was encrypted
        return pq.read_table(pa.BufferReader(stored.read_bytes(layout.INDIVIDUALS_PLAIN)))
    if secret_key is None:
        raise PermissionError(f"{name} is encrypted: open the dataset through "
                              "NodeStore, which holds the node's key")
    plain = decrypt_stream(encrypted, secret_key, name=name)
    return pq.read_table(pa.BufferReader(plain))
