"""htsget against real clients over loopback HTTP (a real uvicorn server): `bcftools view` and
`samtools view` given a ticket URL return exactly what they return with a region on the source
file, and the `htsget` client from PyPI fetches the same bytes (plain and Crypt4GH-encrypted).

The node, its login issuer and the callers' passports come from tests/files/conftest.py.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

import htsget
from genofed.formats.crypt4gh import KeyPair, decrypt_stream, encode_public_key
from tests.files import conftest as files_fixtures
from tests.support import HTSGET_DATA, require_tool, served

pytestmark = pytest.mark.external
BAM = HTSGET_DATA / "bam" / "htsnexus_test_NA12878.bam"
CRAM = HTSGET_DATA / "cram" / "htsnexus_test_NA12878.cram"


def _token() -> str:
    """bob's passport (a visa for ds-plain), issued when the node was built."""
    token: str = files_fixtures.TOKENS["token-plain"]
    return token


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> object:
    for tool in ("bcftools", "samtools", "bgzip", "tabix"):
        require_tool(tool)
    return files_fixtures.build_htsget_node(tmp_path_factory.mktemp("htsget-clients"))



@pytest.fixture(scope="module")
def server(node: object) -> Iterator[str]:
    with served(node.app()) as base:  # type: ignore[attr-defined]
        yield base


@pytest.fixture(scope="module")
def hts_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """htslib sends the bearer token from HTS_AUTH_LOCATION with its htsget requests (over
    plain HTTP only when told that loopback is fine)."""
    token = tmp_path_factory.mktemp("auth") / "token"
    token.write_text(_token())
    return {**os.environ, "HTS_AUTH_LOCATION": str(token),
            "HTS_ALLOW_UNENCRYPTED_AUTHORIZATION_HEADER": "I understand the risks"}


def _run(command: list[str], env: dict[str, str] | None = None) -> bytes:
    result = subprocess.run(command, capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def _url(base: str, path: str, region: tuple[str, int | None, int | None] | None) -> str:
    if region is None:
        return f"{base}{path}"
    name, start, end = region
    params = {"referenceName": name, **({"start": start} if start is not None else {}),
              **({"end": end} if end is not None else {})}
    return f"{base}{path}?{urlencode(params)}"


def _text(region: tuple[str, int | None, int | None]) -> str:
    name, start, end = region
    if start is None and end is None:
        return name
    return f"{name}:{(start or 0) + 1}-{'' if end is None else end}"


VARIANT_CASES = [
    ("/htsget/variants/ds-plain", "cohort", [("20", 0, 30_000), ("20", 100_000, 100_500),
                                             ("20", 150_000, None), ("20", None, None)]),
    ("/htsget/variants/ds-plain/synthetic?format=VCF", "synthetic.vcf.gz",
     [("1", 10_000, 90_000), ("2", 0, 1), ("X", 200_000, 260_000)]),
    ("/htsget/variants/ds-plain/synthetic?format=BCF", "synthetic.bcf",
     [("1", 10_000, 90_000), ("X", 200_000, 400_000)]),
    ("/htsget/variants/ds-plain/spec-v4.3", "spec", [("20", 14_000, 1_230_237)]),
]


@pytest.mark.parametrize(("path", "source", "regions"), VARIANT_CASES,
                         ids=[c[1] for c in VARIANT_CASES])
def test_bcftools_reads_htsget_urls(server: str, node: object, hts_env: dict[str, str],
                                    path: str, source: str,
                                    regions: list[tuple[str, int | None, int | None]]) -> None:
    sources = {"cohort": node.cohort_vcf,  # type: ignore[attr-defined]
               "synthetic.vcf.gz": node.synthetic_vcf,  # type: ignore[attr-defined]
               "synthetic.bcf": node.synthetic_bcf,  # type: ignore[attr-defined]
               "spec": HTSGET_DATA / "bcf" / "spec-v4.3.bcf"}
    file = sources[source]
    for region in regions:
        base_path, _, query = path.partition("?")
        url = _url(server, base_path, region) + (f"&{query}" if query else "")
        got = _run(["bcftools", "view", "-H", url], hts_env)
        assert got == _run(["bcftools", "view", "-H", "-r", _text(region), str(file)]), region
    header = _run(["bcftools", "view", "--no-version", "-h",
                   f"{server}{path.partition('?')[0]}?class=header"], hts_env)
    assert header == _run(["bcftools", "view", "--no-version", "-h", str(file)])


def test_samtools_reads_htsget_urls(server: str, hts_env: dict[str, str],
                                    tmp_path: Path) -> None:
    path = "/htsget/reads/ds-plain/htsnexus_test_NA12878"
    for region in (("11", 4_999_975, 5_000_100), ("11", 5_000_000, 5_060_000), ("20", None, None),
                   ("20", 6_000_000, 6_000_001)):
        got = _run(["samtools", "view", _url(server, path, region)], hts_env)
        assert got == _run(["samtools", "view", str(BAM), _text(region)]), region
    # CRAM is sliced by container: the reads in the region are exactly those of the source
    sliced = tmp_path / "slice.cram"
    region = ("11", 5_000_000, 5_060_000)
    _run(["samtools", "view", "-C", "--no-PG", "-o", str(sliced),
          _url(server, path, region) + "&format=CRAM"], hts_env)
    _run(["samtools", "index", str(sliced)])
    assert (_run(["samtools", "view", str(sliced), _text(region)])
            == _run(["samtools", "view", str(CRAM), _text(region)]))


def _manual_fetch(ticket: dict[str, object]) -> bytes:
    import base64

    blob = bytearray()
    for url in ticket["htsget"]["urls"]:  # type: ignore[index]
        if url["url"].startswith("data:"):
            blob += base64.b64decode(url["url"].split(",", 1)[1])
        else:
            blob += httpx.get(url["url"]).content
    return bytes(blob)


def test_pypi_htsget_client_fetches_the_same_bytes(server: str, tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {_token()}"}
    for path, region in (("/htsget/reads/ds-plain/htsnexus_test_NA12878", ("11", 5_000_000,
                                                                             5_010_000)),
                         ("/htsget/variants/ds-plain", ("20", 10_000, 60_000))):
        output = io.BytesIO()
        htsget.get(f"{server}{path}", output, reference_name=region[0], start=region[1],
                   end=region[2], bearer_token=_token())
        ticket = httpx.get(_url(server, path, region), headers=headers).json()
        assert output.getvalue() == _manual_fetch(ticket)
    # encrypted for the client: the same bytes once decrypted
    client_keys = KeyPair.generate()
    import base64

    key_header = base64.b64encode(encode_public_key(client_keys.public).encode()).decode()
    path = "/htsget/reads/ds-plain/htsnexus_test_NA12878"
    encrypted = io.BytesIO()
    htsget.get(f"{server}{path}?encryptionScheme=C4GH", encrypted, reference_name="11",
               start=5_000_000, end=5_010_000, bearer_token=_token(),
               headers={"Htsget-Context-Public-Key": key_header})
    plain = io.BytesIO()
    htsget.get(f"{server}{path}", plain, reference_name="11", start=5_000_000, end=5_010_000,
               bearer_token=_token())
    assert decrypt_stream(encrypted.getvalue(), client_keys.secret) == plain.getvalue()
