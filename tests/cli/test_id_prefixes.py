"""Unique id prefixes (issue 12): `access show`, `decide` and `revoke` take the first characters
of an application id or a visa's jti, as people copy them from a listing; a prefix that several
ids start with is refused naming them, and nothing is decided or revoked."""

from __future__ import annotations

from pathlib import Path

import pytest

from genofed.access.db import GovernanceDB
from genofed.access.lookup import MIN_PREFIX, application_id, visa_jti
from genofed.errors import ApplicationNotFoundError, GovernanceError
from tests.access.governance.conftest import database_url, postgres_server  # noqa: F401
from tests.cli.scripted import (
    DATASET,
    MEMBER,
    apply,
    as_json,
    controlled_node,
    insert_application,
    insert_visa,
)
from tests.support import HTSGET_DATA, genofed

VCF = HTSGET_DATA / "vcf" / "spec-v4.3.vcf.gz"
#: Two applications and two visas whose ids share a prefix, and one with the same letters in
#: another case (PostgreSQL compares LIKE case-sensitively, SQLite does not: neither may match).
TWINS = ("abcd1111" + "0" * 24, "abcd2222" + "0" * 24)
UPPER = "ABCD3333" + "0" * 24
VISAS = ("5eed0000-0000-4000-8000-000000000001", "5eed0000-0000-4000-8000-000000000002")


def _seed(db: GovernanceDB) -> None:
    with db.write() as session:
        for chosen in (*TWINS, UPPER):
            insert_application(session, chosen)
        session.flush()
        for jti in VISAS:
            insert_visa(session, jti, TWINS[0], DATASET if jti == VISAS[0] else "other")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not VCF.is_file():
        pytest.skip(f"{VCF} not found (the shared test data)")
    path = controlled_node(tmp_path_factory.mktemp("prefixes"), VCF)
    db = GovernanceDB.for_node(path)
    try:
        _seed(db)
    finally:
        db.close()
    return path


def refused(*args: str | Path) -> str:
    result = genofed(*args)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_a_unique_prefix_names_the_application_and_the_visa(seeded: Path) -> None:
    application = apply(seeded)
    prefix = application["id"][:8]
    shown = as_json(genofed("access", "show", seeded, prefix, "--json", check=True))
    assert shown["id"] == application["id"]
    assert as_json(genofed("access", "show", seeded, "abcd1", "--json", check=True))["id"] == \
        TWINS[0]

    decided = genofed("access", "decide", seeded, prefix, "approve", "--member", MEMBER,
                      check=True)
    assert f"Application {application['id']} is now approved" in decided.stdout
    jti = decided.stdout.split("issued visa ")[1].split()[0]
    revoked = genofed("access", "revoke", seeded, jti[:MIN_PREFIX + 4], "--member", MEMBER,
                      "--note", "ended", check=True)
    assert f"Revoked visa {jti}" in revoked.stdout
    (visa,) = as_json(genofed("access", "show", seeded, prefix, "--json", check=True))["visas"]
    assert visa["jti"] == jti and visa["revokedAt"] is not None

    listed = genofed("access", "list", seeded, check=True).stdout
    assert all(line.split("\t")[0] != prefix for line in listed.splitlines())


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(seeded: Path) -> None:
    for args in (("access", "show", seeded, "abcd"),
                 ("access", "decide", seeded, "abcd", "reject", "--member", MEMBER)):
        message = refused(*args)
        assert "ambiguous" in message and TWINS[0] in message and TWINS[1] in message
        assert UPPER not in message  # another case is another id
        assert "give more characters" in message
    states = {a["id"]: a["state"] for a in as_json(genofed("access", "list", seeded, "--json",
                                                           check=True))}
    assert states[TWINS[0]] == states[TWINS[1]] == "submitted"  # nothing was decided

    message = refused("access", "revoke", seeded, "5eed0000", "--member", MEMBER)
    assert "ambiguous" in message and VISAS[0] in message and VISAS[1] in message
    shown = as_json(genofed("access", "show", seeded, TWINS[0], "--json", check=True))
    assert all(v["revokedAt"] is None for v in shown["visas"])  # nothing was revoked


def test_a_prefix_that_matches_nothing(seeded: Path) -> None:
    message = refused("access", "show", seeded, "0123456789")
    assert "no application '0123456789'" in message
    message = refused("access", "revoke", seeded, "0000dead", "--member", MEMBER)
    assert "no visa '0000dead'" in message
    # LIKE's wildcards are literal characters in a prefix
    for wildcard in ("abcd%", "abc_", "%", "____"):
        assert "no application" in refused("access", "show", seeded, wildcard)
    short = refused("access", "show", seeded, "abc")
    assert "no application 'abc'" in short and f"at least its first {MIN_PREFIX}" in short


def test_the_lookup_on_each_backend(database_url: str) -> None:  # noqa: F811
    db = GovernanceDB(database_url)
    try:
        _seed(db)
        assert application_id(db, TWINS[1]) == TWINS[1]
        assert application_id(db, "abcd2") == TWINS[1]
        assert application_id(db, "ABCD") == UPPER
        with pytest.raises(GovernanceError, match="ambiguous") as ambiguous:
            application_id(db, "abcd")
        assert not isinstance(ambiguous.value, ApplicationNotFoundError)
        with pytest.raises(GovernanceError, match="ambiguous"):
            visa_jti(db, "5eed")
        assert visa_jti(db, VISAS[1]) == VISAS[1]
        for nothing in ("abcd%", "abc_1111", "AbCd", "abcd9"):
            with pytest.raises(ApplicationNotFoundError):
                application_id(db, nothing)
    finally:
        db.close()

