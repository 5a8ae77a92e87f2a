"""Original files Crypt4GH-encrypted at rest, and htsget v1.3 slices of them (plain or
re-encrypted for the requester).

Layers, as in htsget-rs: :mod:`~genofed.files.crypt4gh_io` (segments, headers, edit lists),
:mod:`~genofed.files.formats` and :mod:`~genofed.files.indexes` (what a VCF/BCF/BAM/CRAM and its
index say), :mod:`~genofed.files.storage` (where files live in a dataset version, reading them
back), :mod:`~genofed.files.archive` and :mod:`~genofed.files.bgzf_layout` (writing them),
:mod:`~genofed.files.search` (regions -> bytes), :mod:`~genofed.files.delivery` and
:mod:`~genofed.files.tokens` (tickets and their data URLs), :mod:`~genofed.files.htsget_request`
and :mod:`~genofed.files.htsget` (HTTP).
"""
