"""Original files Crypt4GH-encrypted at rest, and htsget v1.3 slices of them (plain or
re-encrypted for the requester).

Layers, as in htsget-rs: :mod:`~genofed.formats.crypt4gh` (segments, headers, edit lists),
:mod:`~genofed.formats.hts` and :mod:`~genofed.formats.indexes` (what a VCF/BCF/BAM/CRAM and its
index say), :mod:`~genofed.store.originals` (where files live in a dataset version, reading them
back), :mod:`~genofed.store.archive` and :mod:`~genofed.formats.bgzf_layout` (writing them),
:mod:`~genofed.files.search` (regions -> bytes), :mod:`~genofed.files.delivery` and
:mod:`~genofed.files.tokens` (tickets and their data URLs), :mod:`~genofed.files.htsget_request`
and :mod:`~genofed.files.htsget` (HTTP).
"""
