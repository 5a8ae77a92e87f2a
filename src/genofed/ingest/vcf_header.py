"""VCF header: parsed and checked before any record is read, so that errors name the header line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from genofed.errors import InputError

_FIXED_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
_STRUCTURED = re.compile(r"^##([A-Za-z0-9_.-]+)=<(.*)>$")
_KEY_VALUE = re.compile(r'([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|[^,]*)')
_SUPPORTED_VERSIONS = {"VCFv4.0", "VCFv4.1", "VCFv4.2", "VCFv4.3", "VCFv4.4"}


@dataclass
class Contig:
    id: str
    length: int | None = None


@dataclass
class VcfHeader:
    file_format: str
    samples: list[str]
    contigs: list[Contig] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    text: str = ""
    #: number of header lines, so record line numbers can be reported
    n_lines: int = 0

    def contig_index(self) -> dict[str, int]:
        return {contig.id: i for i, contig in enumerate(self.contigs)}


def parse_header(text: str, *, name: str) -> VcfHeader:
    """Parse the header lines (all `##` lines and the `#CHROM` line) of a VCF.

    Raises InputError naming the file and line for anything htslib would also reject or misread.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].startswith("##fileformat="):
        raise InputError(name, "malformed header: the first line must be ##fileformat=VCFv4.x",
                         line=1)
    file_format = lines[0].split("=", 1)[1].strip()
    if file_format not in _SUPPORTED_VERSIONS:
        raise InputError(name, f"malformed header: unsupported file format {file_format!r} "
                         f"(supported: {', '.join(sorted(_SUPPORTED_VERSIONS))})", line=1)
    contigs: list[Contig] = []
    filters = ["PASS"]
    samples: list[str] | None = None
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith("##"):
            if "=" not in line:
                raise InputError(name, "malformed header: meta-information line without '='",
                                 line=number)
            structured = _STRUCTURED.match(line)
            if line[2:].split("=", 1)[1].startswith("<") and not structured:
                raise InputError(name, "malformed header: structured line not closed with '>'",
                                 line=number)
            if structured:
                key, body = structured.group(1), structured.group(2)
                fields = {k: v.strip('"') for k, v in _KEY_VALUE.findall(body)}
                if key in {"INFO", "FORMAT", "FILTER", "contig", "ALT"} and "ID" not in fields:
                    raise InputError(name, f"malformed header: ##{key} line without ID",
                                     line=number)
                if key == "contig":
                    length = fields.get("length")
                    if length is not None and not length.isdigit():
                        raise InputError(name, f"malformed header: contig length {length!r} "
                                         "is not a number", line=number)
                    contigs.append(Contig(fields["ID"], int(length) if length else None))
                elif key == "FILTER" and fields["ID"] not in filters:
                    filters.append(fields["ID"])
        elif line.startswith("#CHROM"):
            columns = line.split("\t")
            if columns[:8] != _FIXED_COLUMNS:
                raise InputError(name, "malformed header: the #CHROM line must be tab-separated "
                                 "#CHROM POS ID REF ALT QUAL FILTER INFO [FORMAT samples...]",
                                 line=number)
            if len(columns) > 8 and columns[8] != "FORMAT":
                raise InputError(name, "malformed header: the 9th column must be FORMAT",
                                 line=number)
            samples = columns[9:]
            if len(set(samples)) != len(samples):
                duplicated = sorted({s for s in samples if samples.count(s) > 1})
                raise InputError(name, f"malformed header: duplicate sample names: "
                                 f"{', '.join(duplicated[:5])}", line=number)
            if number != len(lines):
                raise InputError(name, "malformed header: lines after #CHROM before records",
                                 line=number + 1)
        else:
            raise InputError(name, "malformed header: expected a '##' line or the #CHROM line",
                             line=number)
    if samples is None:
        raise InputError(name, "malformed header: the #CHROM header line is missing",
                         line=len(lines) + 1)
    return VcfHeader(file_format=file_format, samples=samples, contigs=contigs, filters=filters,
                     text=text if text.endswith("\n") else text + "\n", n_lines=len(lines))
