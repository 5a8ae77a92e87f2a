"""Contig names as sources spell them, and the one name genofed matches them by."""

from __future__ import annotations


def normalize_contig(name: str) -> str:
    """'chr20' and '20' name the same contig; so do 'chrM', 'M' and 'MT'."""
    bare = name[3:] if name.lower().startswith("chr") else name
    return "MT" if bare.upper() in {"M", "MT"} else bare.upper() if bare.isalpha() else bare
