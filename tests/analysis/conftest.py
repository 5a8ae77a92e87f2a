"""A simulated cohort of 3,000 individuals (1 Mb of chr20, 1% of calls missing) shared by three
nodes, and the same data pooled for plink2: the reference every federated result must equal.

The shares are 1,200 (FI), 1,000 (SE) and 800 (NL) individuals. The NL share lacks every 40th
variant, as a node genotyped on another array would: in the pooled file those variants are
missing for NL's individuals (what `bcftools merge` of the three shares leaves), never reference.
`pooled.pgen` is that merge, multi-allelic records split (`bcftools norm -m-`), in plink2's own
format with sex; `pheno.tsv` and `covar.tsv` hold LDL (LOINC:2089-1), seizure status (HP:0002069
and descendants), sex and age, read from the Phenopackets as a node reads them.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from genofed.config.node import init_node
from genofed.formats.bgzf import BgzfWriter
from genofed.ingest import ingest_dataset
from genofed.ontology.hpo import hpo
from genofed.sim import simulate_cohort
from tests.support import require_tool

SHARES = {"fi": ("FI", 1200), "se": ("SE", 1000), "nl": ("NL", 800)}
#: The NL share lacks every DROP_EVERY-th record of the pooled cohort.
DROP_EVERY = 40
LDL = "LOINC:2089-1"
SEIZURES = "HP:0002069"


@dataclass(frozen=True)
class Share:
    node_id: str
    country: str
    node: Path  # the node directory
    dataset: str
    vcf: Path
    samples: list[str]


@dataclass(frozen=True)
class AnalysisCohort:
    root: Path
    shares: list[Share]
    #: plink2's input: pooled.pgen/.pvar/.psam (merged, split multi-allelics, sex set).
    plink_prefix: Path
    #: FID/IID, LDL, SEIZURES (1 control, 2 case; NA where unknown); FID/IID, SEX, AGE.
    pheno: Path
    covar: Path
    merged_vcf: Path
    truth: dict[str, object]

    @property
    def samples(self) -> list[str]:
        return [s for share in self.shares for s in share.samples]


def _run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True,
                          text=True).stdout


def _drop_records(source: Path, target: Path, every: int) -> None:
    with gzip.open(source, "rt") as handle, BgzfWriter(target) as writer:
        record = 0
        for line in handle:
            if not line.startswith("#"):
                record += 1
                if record % every == 0:
                    continue
            writer.write_record(line.encode())
    _run("bcftools", "index", "-t", target)


def _pheno_and_covar(packets: Path, samples: list[str], pheno: Path, covar: Path) -> None:
    seizures = hpo().descendants(SEIZURES) | {SEIZURES}
    pheno_rows, covar_rows = ["#FID\tIID\tLDL\tSEIZURES"], ["#FID\tIID\tSEX\tAGE"]
    for sample in samples:
        packet = json.loads((packets / f"{sample}.json").read_text())
        ldl = next((m["value"]["quantity"]["value"] for m in packet.get("measurements", [])
                    if m["assay"]["id"] == LDL), None)
        terms = {f["type"]["id"] for f in packet.get("phenotypicFeatures", [])
                 if not f.get("excluded")}
        case = 2 if terms & seizures else 1
        sex = {"MALE": "1", "FEMALE": "2"}.get(packet["subject"].get("sex", ""), "NA")
        age = packet["subject"]["timeAtLastEncounter"]["age"]["iso8601duration"]
        pheno_rows.append(f"{sample}\t{sample}\t{'NA' if ldl is None else ldl}\t{case}")
        covar_rows.append(f"{sample}\t{sample}\t{sex}\t{float(age[1:-1])}")
    pheno.write_text("\n".join(pheno_rows) + "\n")
    covar.write_text("\n".join(covar_rows) + "\n")


@pytest.fixture(scope="session")
def analysis_cohort(tmp_path_factory: pytest.TempPathFactory) -> AnalysisCohort:
    for tool in ("bcftools", "plink2"):
        require_tool(tool)
    root = tmp_path_factory.mktemp("analysis")
    total = sum(n for _c, n in SHARES.values())
    pooled = simulate_cohort(root / "pooled", samples=total, seed=23, length_mb=1.0,
                             missing_rate=0.01, dataset_id="pooled", access_tier="controlled")
    names = _run("bcftools", "query", "-l", pooled.vcf).split()
    shares, start = [], 0
    for node_id, (country, count) in SHARES.items():
        own = names[start:start + count]
        start += count
        out = root / f"share-{node_id}"
        (out / "phenopackets").mkdir(parents=True)
        vcf = out / "cohort.vcf.gz"
        _run("bcftools", "view", "-s", ",".join(own), "-Oz", "-o", vcf, pooled.vcf)
        _run("bcftools", "index", "-t", vcf)
        if node_id == "nl":
            dropped = out / "cohort.dropped.vcf.gz"
            _drop_records(vcf, dropped, DROP_EVERY)
            vcf = dropped
        for name in own:
            shutil.copy(pooled.phenopackets_dir / f"{name}.json", out / "phenopackets")
        dataset = f"{node_id}-cohort"
        metadata = json.loads(pooled.dataset_metadata.read_text())
        metadata.update(id=dataset, name=f"{dataset} ({len(own)} individuals)")
        (out / "dataset.json").write_text(json.dumps(metadata))
        node = root / f"node-{node_id}"
        init_node(node, node_id=f"{node_id}-node", country=country)
        ingest_dataset(node, dataset, vcf, phenopackets=out / "phenopackets",
                       metadata=out / "dataset.json")
        shares.append(Share(f"{node_id}-node", country, node, dataset, vcf, own))

    merged = root / "merged.vcf.gz"
    _run("bcftools", "merge", "-Oz", "-o", merged, *(s.vcf for s in shares))
    normalized = root / "merged.norm.vcf.gz"
    _run("bcftools", "norm", "-m-", "-Oz", "-o", normalized, merged)
    pheno, covar = root / "pheno.tsv", root / "covar.tsv"
    _pheno_and_covar(pooled.phenopackets_dir, names, pheno, covar)
    sex = root / "sex.tsv"
    sex.write_text("#FID\tIID\tSEX\n" + "".join(
        "\t".join(line.split()[:3]) + "\n" for line in covar.read_text().splitlines()[1:]))
    prefix = root / "pooled"
    _run("plink2", "--vcf", normalized, "--double-id", "--set-all-var-ids", "@:#:$r:$a",
         "--new-id-max-allele-len", "1000", "--update-sex", sex, "--make-pgen",
         "--out", prefix)
    return AnalysisCohort(root, shares, prefix, pheno, covar, merged,
                          json.loads(pooled.truth.read_text()))
