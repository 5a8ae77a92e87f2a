"""Hand-written VCFs with what real files contain and simulations don't: multi-allelic sites with
multi-digit allele indexes, missing and haploid calls (chrX in males, chrY, MT), symbolic and `*`
alleles, extra FORMAT fields, contigs with and without `chr`, VCF 4.1 and 4.3 headers."""

from __future__ import annotations

import subprocess
from pathlib import Path

SAMPLES = ["F1", "F2", "M1", "M2"]

WITH_CHR = """\
##fileformat=VCFv4.1
##contig=<ID=chr1,length=1000000>
##contig=<ID=chrX,length=2000000>
##contig=<ID=chrY,length=1000000>
##contig=<ID=chrM,length=16569>
##ALT=<ID=DEL,Description="Deletion">
##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type">
##INFO=<ID=END,Number=1,Type=Integer,Description="End">
##FILTER=<ID=q10,Description="Quality below 10">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO	FORMAT	F1	F2	M1	M2
chr1	100	rs1	A	G	50	PASS	.	GT	0|1	1|1	0/0	./.
chr1	200	.	C	T,G,*	.	q10	.	GT:DP	1/2:10	3|0:5	./1:.	0/3:3
chr1	300	.	G	<DEL>	.	.	SVTYPE=DEL;END=350	GT	0/1	0/0	1/1	0/0
chr1	300	.	G	A	.	.	.	GT	0/0	0/1	0/0	0/0
chr1	400	.	AT	A,ATT	.	.	.	GT	0/1	1/2	2/2	.
chr1	500	.	T	.	.	.	.	GT	0/0	0/0	0/0	0/0
chr1	600	.	A	C,G,T,AC,AG,AT,CA,GA,TA,AAA	.	.	.	GT	10/1	0/10	5|7	9/0
chr1	700	.	G	C	.	.	.	DP:GT	3:0/1	4:1/1	5:0/0	6:./.
chrX	1000	.	G	A	.	.	.	GT	0/1	1/1	0	1
chrX	1500	.	C	T	.	.	.	GT:DP	0|0:1	0|1:2	1:3	.:4
chrY	50	.	C	T	.	.	.	GT	.	.	1	0
chrM	73	.	A	G	.	.	.	GT	1	1	0	1
"""

WITHOUT_CHR = """\
##fileformat=VCFv4.3
##contig=<ID=1,length=1000000>
##contig=<ID=X,length=2000000>
##contig=<ID=MT,length=16569>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO	FORMAT	F1	F2	M1	M2
1	100	.	A	G	.	.	.	GT	0|1	1|1	0|0	0|1
1	150	.	A	G,C	.	.	.	GT	0|1	1|2	.|0	2|2
X	1000	.	G	A	.	.	.	GT	0|1	1|1	0	1
MT	73	.	A	G	.	.	.	GT	1	1	0	1
"""


#: FORMAT GT only, one-character calls: the layout ingest's C kernel decodes, here with missing
#: alleles, unphased calls, multi-allelic records and a record without ALT.
KERNEL_LAYOUT = """\
##fileformat=VCFv4.2
##contig=<ID=2,length=1000000>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##FILTER=<ID=q10,Description="Quality below 10">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO	FORMAT	F1	F2	M1	M2
2	100	rs9	A	G	30	PASS	.	GT	0|1	./.	1/1	.|0
2	120	.	C	T,A	.	.	DP=3	GT	2/1	0|2	./1	1|1
2	130	.	G	.	.	.	.	GT	0/0	0|0	./.	0|0
2	140	.	T	C	.	q10	.	GT	.|.	./.	./.	./.
"""

#: No FORMAT and no samples (as population-frequency files are distributed).
SITES_ONLY = """\
##fileformat=VCFv4.2
##contig=<ID=3,length=1000000>
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO
3	500	rs1	A	G	.	PASS	AF=0.1
3	600	.	C	T,G	.	PASS	AF=0.2,0.01
"""


def write_variants(directory: Path, name: str, text: str) -> dict[str, Path]:
    """The same records as plain VCF, bgzipped VCF (+tbi) and BCF (+csi)."""
    directory.mkdir(parents=True, exist_ok=True)
    plain = directory / f"{name}.vcf"
    plain.write_text(text)
    gz = directory / f"{name}.vcf.gz"
    bcf = directory / f"{name}.bcf"
    subprocess.run(["bcftools", "view", "-Oz", "-o", gz, plain], check=True)
    subprocess.run(["bcftools", "index", "-t", gz], check=True)
    subprocess.run(["bcftools", "view", "-Ob", "-o", bcf, plain], check=True)
    subprocess.run(["bcftools", "index", bcf], check=True)
    return {"vcf": plain, "vcf.gz": gz, "bcf": bcf}
