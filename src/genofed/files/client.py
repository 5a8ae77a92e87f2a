"""An htsget client for researchers: the ticket for a slice, then its blocks, written out as one
file (`genofed files fetch`). htslib reads plain htsget URLs itself (`bcftools view URL`); an
encrypted slice needs this (or any htsget client that sends a public key): the node encrypts it
for the key in `Htsget-Context-Public-Key`, and `crypt4gh decrypt` opens it."""

from __future__ import annotations

import base64
import binascii
from typing import BinaryIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from genofed.errors import HtsgetError

PUBLIC_KEY_HEADER = "Htsget-Context-Public-Key"


def _refused(response: httpx.Response, what: str) -> HtsgetError:
    try:
        error = response.json()["htsget"]
        message = f"{error['error']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        message = response.text[:300] or response.reason_phrase
    refusal = HtsgetError(f"{what} refused with HTTP {response.status_code}: {message}")
    refusal.status = response.status_code
    return refusal


def fetch_slice(url: str, out: BinaryIO, *, token: str | None = None,
                public_key: bytes | None = None, timeout: float = 60.0) -> int:
    """Fetch the slice a ticket URL names into `out`; returns the bytes written. With
    `public_key` (a Crypt4GH public key file's bytes) the slice arrives encrypted for it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HtsgetError(f"{url!r} is not an http(s) htsget ticket URL")
    headers = {"accept": "application/vnd.ga4gh.htsget.v1.3.0+json, application/json"}
    if token:
        headers["authorization"] = f"Bearer {token.strip()}"
    if public_key is not None:
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != "encryptionScheme"] + [("encryptionScheme", "C4GH")]
        url = urlunsplit(parts._replace(query=urlencode(query)))
        headers[PUBLIC_KEY_HEADER] = base64.b64encode(public_key).decode("ascii")
    written = 0
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        ticket = client.get(url, headers=headers)
        if ticket.status_code != 200:
            raise _refused(ticket, "the ticket")
        try:
            blocks = ticket.json()["htsget"]["urls"]
        except (ValueError, KeyError, TypeError):
            raise HtsgetError(f"{url}: the answer is not an htsget ticket") from None
        for number, block in enumerate(blocks, start=1):
            target = block.get("url", "") if isinstance(block, dict) else ""
            if target.startswith("data:"):
                try:
                    data = base64.b64decode(target.split(",", 1)[1], validate=True)
                except (IndexError, binascii.Error):
                    raise HtsgetError(f"block {number} of the ticket is a malformed data: "
                                      "URI") from None
            else:
                response = client.get(target, headers=block.get("headers") or {})
                if response.status_code != 200:
                    raise _refused(response, f"block {number} of the ticket")
                data = response.content
            out.write(data)
            written += len(data)
    return written
