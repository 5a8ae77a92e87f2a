"""`genofed files ...`: the node's Crypt4GH-encrypted original files (what htsget serves)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from genofed.cli.output import Column, console, human_bytes, json_option, print_json, print_table

if TYPE_CHECKING:
    from genofed.store.originals import CatalogueEntry

app = typer.Typer(help="Original files kept Crypt4GH-encrypted on the node and served by htsget "
                  "(/htsget/variants/{dataset}, /htsget/{variants|reads}/{dataset}/{name}).",
                  no_args_is_help=True)


@app.command("add")
def add(
    node_dir: Path = typer.Argument(..., help="The node directory."),
    file: Path = typer.Argument(..., help="BAM, CRAM, VCF.gz or BCF; plain, or already "
                                "Crypt4GH-encrypted for the node's key (.c4gh)."),
    dataset: str = typer.Option(..., "--dataset", help="The dataset the file belongs to (it "
                                "must have been ingested)."),
    index: Path | None = typer.Option(None, "--index", help="Its index (.bai, .crai, .tbi, "
                                      ".csi; plain or .c4gh); built when not given."),
    name: str | None = typer.Option(None, "--name", help="Name within the dataset (htsget id "
                                    "{dataset}/{name}); default: the file name without "
                                    "extensions."),
    as_json: bool = json_option("the archived file", "The same object as one element of "
                                "`files list --json`."),
) -> None:
    """Add a file to a dataset, encrypted at rest, as a new dataset version (atomically).

    Plain files are encrypted for the node's key as they are read; files that are not laid out
    with every record inside one BGZF block are re-encoded first. A .c4gh upload must be
    encrypted for the node's public key (`genofed files key`); every segment is authenticated
    and a truncated or tampered file is rejected without storing anything.
    """
    from genofed.store.archive import add_file, list_files

    result = add_file(node_dir, dataset, file, index=index, name=name)
    entry = result.entry
    if as_json:
        plain = any(p for d, _, p, _ in list_files(node_dir) if d == dataset)
        print_json(_file_json(dataset, result.version, plain, entry))
        return
    how = "verified and kept as uploaded" if entry.uploaded_encrypted and not entry.reencoded \
        else "encrypted for the node's key"
    console.print(f"Added [bold]{entry.name}[/] ({entry.format}, "
                  f"{human_bytes(entry.plaintext_size)}) to {dataset} {result.version}: {how}; "
                  f"index .{entry.index_kind}.")
    for note in entry.notes:
        console.print(f"  note: {note}")
    console.print(f"  htsget id: {dataset}/{entry.name} ({entry.file_format.datatype})")


@app.command("list")
def list_(
    node_dir: Path = typer.Argument(..., help="The node directory."),
    as_json: bool = json_option("the files", "An array of objects with htsgetId, datasetId, "
                                "version, name, role, format, datatype, sizeBytes, index, "
                                "plainDelivery, added, uploadedEncrypted, reencoded, notes."),
) -> None:
    """List the archived files of every dataset (current versions).

    On a terminal a table; otherwise tab-separated values under a header line (`... | cut -f1`
    gives the htsget ids)."""
    from genofed.store.archive import list_files

    rows = list_files(node_dir)
    if as_json:
        print_json([_file_json(dataset, version, plain, entry)
                    for dataset, version, plain, entry in rows])
        return
    print_table(
        (Column("htsget id (under /htsget/)", identifier=True), Column("format"),
         Column("size", "right"), Column("index"), Column("delivery"), Column("version")),
        ((_htsget_id(dataset, entry), entry.format, human_bytes(entry.plaintext_size),
          entry.index_kind or "none", "plain or C4GH" if plain else "C4GH only",
          f"{dataset} {version}") for dataset, version, plain, entry in rows),
        title="Archived files (Crypt4GH at rest)",
        empty="No archived files yet: `genofed ingest` archives a dataset's VCF/BCF, "
              "`genofed files add` adds BAM/CRAM and more.")


def _htsget_id(dataset: str, entry: CatalogueEntry) -> str:
    """The file's id under /htsget/: a dataset's variants are served as the dataset itself."""
    return f"{entry.file_format.datatype}/{dataset}" + (
        "" if entry.role == "variants" else f"/{entry.name}")


def _file_json(dataset: str, version: str, plain: bool,
               entry: CatalogueEntry) -> dict[str, Any]:
    """One archived file, for scripts (`sizeBytes` is the plaintext size)."""
    return {"htsgetId": _htsget_id(dataset, entry), "datasetId": dataset, "version": version,
            "name": entry.name, "role": entry.role, "format": entry.format,
            "datatype": entry.file_format.datatype, "sizeBytes": entry.plaintext_size,
            "index": entry.index_kind or None, "plainDelivery": plain, "added": entry.added,
            "uploadedEncrypted": entry.uploaded_encrypted, "reencoded": entry.reencoded,
            "notes": list(entry.notes)}


@app.command("delivery")
def delivery(
    node_dir: Path = typer.Argument(..., help="The node directory."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset id."),
    plain: bool = typer.Option(..., "--plain/--encrypted-only", help="Whether htsget may also "
                               "deliver slices unencrypted (to callers the access policy "
                               "allows), or only Crypt4GH-encrypted for the requester's key."),
) -> None:
    """Set how a dataset's files may leave the node (default: encrypted only).

    The setting is kept in the dataset's encrypted file catalogue, so a change publishes a new
    version of the dataset (the data itself is shared with the previous version, not copied);
    asking for the setting the dataset already has changes nothing."""
    from genofed.access.changes import audited_change
    from genofed.access.events import GovernanceEvent
    from genofed.store import NodeStore
    from genofed.store.archive import set_plain_delivery

    current = NodeStore.open(node_dir).dataset(dataset)
    if current.files.plain_delivery == plain:
        result = set_plain_delivery(node_dir, dataset, plain)  # changes nothing, says so
    else:  # recorded in the audit trail before it is made
        with audited_change(node_dir, GovernanceEvent.DELIVERY_CHANGE, dataset_id=dataset,
                            delivery="plain-or-c4gh" if plain else "c4gh-only"):
            result = set_plain_delivery(node_dir, dataset, plain)
    how = "plain or Crypt4GH-encrypted" if plain else "only Crypt4GH-encrypted"
    if result.changed:
        console.print(f"{dataset}: files are now delivered {how}; published as version "
                      f"{result.version}.")
    else:
        console.print(f"{dataset}: files were already delivered {how}; nothing changed "
                      f"(version {result.version}).")


@app.command("key")
def key(node_dir: Path = typer.Argument(..., help="The node directory.")) -> None:
    """Print the node's Crypt4GH public key: encrypt uploads for it."""
    from genofed.config.node import NodePaths, load_config

    paths = NodePaths(node_dir, load_config(node_dir))
    print(paths.c4gh_public_key.read_text(), end="")


@app.command("fetch")
def fetch(
    url: str = typer.Argument(..., help="An htsget ticket URL, e.g. "
                              "http://127.0.0.1:8080/htsget/variants/DATASET?referenceName=20"
                              "&start=100000&end=110000"),
    out: Path = typer.Option(..., "--out", help="Where to write the slice (a VCF/BCF/BAM/CRAM "
                             "file; Crypt4GH-encrypted with --public-key)."),
    token_file: Path | None = typer.Option(None, "--token-file", help="A file holding your "
                                           "bearer token (access token or Passport)."),
    public_key: Path | None = typer.Option(None, "--public-key", help="Your Crypt4GH public "
                                           "key (crypt4gh-keygen): the slice arrives "
                                           "encrypted for it; open it with `crypt4gh decrypt`."),
) -> None:
    """Fetch a slice with htsget, as a researcher: the ticket, then its blocks, into one file.

    Datasets that release files only encrypted need --public-key (`bcftools view URL` reads
    plain slices directly: set HTS_AUTH_LOCATION to your token file)."""
    from genofed.files.client import fetch_slice

    token = token_file.read_text().strip() if token_file is not None else None
    key = public_key.read_bytes() if public_key is not None else None
    partial = out.with_name(out.name + ".part")
    with open(partial, "wb") as handle:
        try:
            size = fetch_slice(url, handle, token=token, public_key=key)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(out)
    console.print(f"Wrote {human_bytes(size)} to {out}"
                  + (" (Crypt4GH: `crypt4gh decrypt --sk YOUR.sec < FILE`)" if key else "."),
                  highlight=False)
