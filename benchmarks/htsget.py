"""htsget benchmark: ticket + fetch of 1 Mb and 10 Mb slices vs `bcftools view -r` on the same
region of the plain file, same machine, same run.

    .venv/bin/python benchmarks/htsget.py [--samples 2500] [--length-mb 20] [--repeats 3]

The cohort is simulated once into benchmarks/work/ and ingested once into a node there (ingest
archives the VCF Crypt4GH-encrypted). The node is served by uvicorn in its own process, with the
real access policy (every ticket and data block audited) and a fixed bearer token standing in
for a passport with a visa for the dataset. Timed, median of the repeats, taking turns:

* `bcftools view -r REGION cohort.vcf.gz` (the anchor: records of the region, from the plain
  indexed file);
* genofed plain: ticket + fetching every URL of it (an HTTP client in this process);
* genofed C4GH: the same, encrypted for a client key; then also decrypting it client-side;
* `bcftools view URL`: bcftools reading the slice through htsget (the same output as the anchor).
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import free_port

WORK = Path(__file__).resolve().parent / "work"
TOKEN = "bench-token"
DATASET = "bench"


# -- the server process ---------------------------------------------------------------------------
def serve(node: Path, port: int) -> None:
    """Run the node's app with a fixed token standing in for a passport (benchmark only)."""
    import uvicorn

    from genofed.access.principal import Grant, Principal
    from genofed.server.app import create_app

    far = 4_102_444_800

    class BenchAuthenticator:
        def authenticate(self, authorization: str | None) -> Principal | None:
            if authorization != f"Bearer {TOKEN}":
                return None
            return Principal("https://login.bench", "researcher", far,
                             (Grant(DATASET, "https://dac.bench", "dac", far, None),),
                             researcher=True)

    app = create_app(node, authenticator=BenchAuthenticator())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- setup -----------------------------------------------------------------------------------------
def prepare(samples: int, length_mb: float) -> tuple[Path, Path]:
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset
    from genofed.sim import simulate_cohort
    from genofed.store.archive import set_plain_delivery
    from genofed.store.metadata import DatasetMetadata

    cohort = WORK / f"cohort-{samples}x{length_mb:g}"
    if not (cohort / "cohort.vcf.gz.tbi").exists():
        print(f"Simulating {samples} samples x {length_mb} Mb ...", flush=True)
        simulate_cohort(cohort, samples=samples, seed=1, length_mb=length_mb,
                        dataset_id=DATASET, overwrite=True)
    node = WORK / f"htsget-node-{samples}x{length_mb:g}"
    if not (node / "datasets" / DATASET / "current" / "files" / "catalogue.c4gh").exists():
        print("Ingesting into a node (the VCF is archived Crypt4GH-encrypted) ...", flush=True)
        import shutil

        shutil.rmtree(node, ignore_errors=True)
        init_node(node, node_id="bench-htsget", country="FI")
        metadata = WORK / f"htsget-{DATASET}.json"
        metadata.write_text(DatasetMetadata(id=DATASET, name=DATASET).to_json())  # controlled
        ingest_dataset(node, DATASET, cohort / "cohort.vcf.gz", metadata=metadata)
        set_plain_delivery(node, DATASET, True)
    return cohort / "cohort.vcf.gz", node


def start_server(node: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(node), "--port",
                                str(port)])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/htsget/service-info", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not come up")


# -- clients --------------------------------------------------------------------------------------
def fetch_slice(client: object, url: str, headers: dict[str, str]) -> bytes:
    """An htsget client: the ticket, then every URL's data, concatenated."""
    ticket = client.get(url, headers=headers).json()  # type: ignore[attr-defined]
    parts = []
    for block in ticket["htsget"]["urls"]:
        if block["url"].startswith("data:"):
            parts.append(base64.b64decode(block["url"].split(",", 1)[1]))
        else:
            response = client.get(block["url"], headers=block.get("headers", {}))  # type: ignore[attr-defined]
            response.raise_for_status()
            parts.append(response.content)
    return b"".join(parts)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--length-mb", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    import httpx
    from rich.console import Console
    from rich.table import Table

    from genofed.formats.crypt4gh import KeyPair, decrypt_stream, encode_public_key

    console = Console(width=150)
    vcf, node = prepare(args.samples, args.length_mb)
    process, base = start_server(node)
    client_keys = KeyPair.generate()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    c4gh = {**auth, "Htsget-Context-Public-Key": base64.b64encode(
        encode_public_key(client_keys.public).encode()).decode()}
    token_file = WORK / "htsget-bench.token"
    token_file.write_text(TOKEN)
    hts_env = {**os.environ, "HTS_AUTH_LOCATION": str(token_file),
               "HTS_ALLOW_UNENCRYPTED_AUTHORIZATION_HEADER": "I understand the risks"}
    start_mb = 2
    table = Table(title=f"htsget slices: {args.samples:,} samples x {args.length_mb:g} Mb "
                  f"({vcf.stat().st_size / 1e6:.1f} MB VCF.gz), {os.cpu_count()} cores, median "
                  f"of {args.repeats}")
    for column in ("slice", "what", "time", "ratio (/ bcftools -r)", "bytes"):
        table.add_column(column, justify="left" if column in ("slice", "what") else "right")
    try:
        with httpx.Client(timeout=600) as client:
            for size_mb in (1, 10):
                start = start_mb * 1_000_000
                end = start + size_mb * 1_000_000
                region = f"20:{start + 1}-{end}"
                url = f"{base}/htsget/variants/{DATASET}?referenceName=20&start={start}&end={end}"
                anchor = ["bcftools", "view", "-r", region, "-o", "/dev/null", str(vcf)]
                via_htsget = ["bcftools", "view", "-o", "/dev/null", url]
                # check once: bcftools through htsget gives the anchor's records
                same = (subprocess.run(["bcftools", "view", "-H", url], capture_output=True,
                                       env=hts_env, check=True).stdout
                        == subprocess.run(["bcftools", "view", "-H", "-r", region, str(vcf)],
                                          capture_output=True, check=True).stdout)
                plain_bytes = fetch_slice(client, url, auth)
                encrypted_bytes = fetch_slice(client, url + "&encryptionScheme=C4GH", c4gh)
                assert decrypt_stream(encrypted_bytes, client_keys.secret) == plain_bytes
                times: dict[str, list[float]] = {k: [] for k in (
                    "anchor", "plain", "c4gh", "c4gh+decrypt", "bcftools-url")}
                for _ in range(args.repeats):
                    times["anchor"].append(timed(lambda a=anchor: subprocess.run(a, check=True)))
                    times["plain"].append(timed(lambda u=url: fetch_slice(client, u, auth)))
                    times["c4gh"].append(timed(lambda u=url: fetch_slice(
                        client, u + "&encryptionScheme=C4GH", c4gh)))
                    times["c4gh+decrypt"].append(timed(lambda u=url: decrypt_stream(
                        fetch_slice(client, u + "&encryptionScheme=C4GH", c4gh),
                        client_keys.secret)))
                    times["bcftools-url"].append(timed(lambda v=via_htsget: subprocess.run(
                        v, check=True, env=hts_env)))
                medians = {k: statistics.median(v) for k, v in times.items()}
                reference = medians["anchor"]
                rows = [("bcftools view -r (plain file)", "anchor", ""),
                        ("genofed ticket + fetch, plain", "plain", f"{len(plain_bytes):,}"),
                        ("genofed ticket + fetch, C4GH", "c4gh", f"{len(encrypted_bytes):,}"),
                        ("genofed ticket + fetch + decrypt, C4GH", "c4gh+decrypt", ""),
                        ("bcftools view <htsget URL>" + ("" if same else " (RECORDS DIFFER)"),
                         "bcftools-url", "")]
                for label, key, size in rows:
                    table.add_row(f"{size_mb} Mb ({region})", label,
                                  f"{medians[key] * 1e3:.0f} ms",
                                  f"{medians[key] / reference:.3f}x", size)
    finally:
        process.terminate()
        process.wait(timeout=10)
    console.print(table)


if __name__ == "__main__":
    main()
