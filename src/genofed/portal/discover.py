"""Portal pages for discovery, beside the hub: search (`/portal/search`), the network
catalogue and dataset pages (`/portal/catalogue`, `/portal/datasets/{node}/{dataset}`) and the
allele-frequency browser (`/portal/frequencies`).

The pages live in :mod:`~genofed.portal.discover_search` and
:mod:`~genofed.portal.discover_catalogue`; what they read and write in words is in
:mod:`~genofed.portal.discover_terms`, how a network Beacon answer is read in
:mod:`~genofed.portal.discover_results`.
"""

from __future__ import annotations

from fastapi import APIRouter

from genofed.portal import discover_catalogue, discover_search

router = APIRouter()
router.include_router(discover_search.router)
router.include_router(discover_catalogue.router)
