"""How the audit trail names a person without naming them.

A person is an (issuer, subject) pair: the `iss` and `sub` of their login token, written
"ISSUER|SUBJECT" in `access.dac_members` and on the command line. The trail stores only their
pseudonym, the first 32 hex digits of SHA-256 over the UTF-8 bytes of ISSUER, a newline and
SUBJECT. It is stable (the same person has the same pseudonym in every record and on every node
that trusts the same issuer) and says nothing about the person to someone who does not already
know their identity, while an auditor who does can compute it and find their records
(`genofed audit pseudonym 'ISSUER|SUBJECT'`).

This module is the one place the derivation is written: :attr:`Principal.pseudonym` (callers of
the data APIs) and :attr:`genofed.access.dac.Identity.pseudonym` (applicants and committee
members) both call :func:`pseudonym`.
"""

from __future__ import annotations

import hashlib
import re

#: Hex digits kept from the SHA-256 (128 bits: no collisions among any realistic population).
LENGTH = 32
#: The derivation in words, for help texts.
DERIVATION = ('the first 32 hex digits of SHA-256 over the UTF-8 bytes of ISSUER + "\\n" + '
              "SUBJECT, where ISSUER and SUBJECT are the `iss` and `sub` of the person's login "
              "token exactly as issued (a trailing slash in the issuer URL counts)")

_PSEUDONYM = re.compile(f"[0-9a-f]{{{LENGTH}}}")


def pseudonym(issuer: str, subject: str) -> str:
    """The audit trail's name for the person `subject` of login issuer `issuer`."""
    return hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:LENGTH]


def is_pseudonym(value: str) -> bool:
    """Whether `value` has the form of a pseudonym (32 lowercase hex digits)."""
    return _PSEUDONYM.fullmatch(value) is not None
