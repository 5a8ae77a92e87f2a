"""The HTTP ends of federated analyses. Thin: parse, identify the caller, hand over.

* node: `POST /federation/analysis` answers a round (peer-signed requests only: the peer
  middleware refuses anything else; the researcher's token comes along at setup only);
* coordinator (the hub): `POST /analysis/jobs` submits a job with the researcher's token,
  `GET /analysis/jobs` lists theirs, `GET /analysis/jobs/{id}` shows its state with every
  node's progress, `GET /analysis/jobs/{id}/files/{name}` downloads a result file.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from genofed.analysis.coordinator import Coordinator
from genofed.analysis.jobs import JobNotFoundError, JobStore
from genofed.analysis.node import AnalysisNode
from genofed.analysis.protocol import ENDPOINT, MEDIA_TYPE, ProtocolError, RoundRequest
from genofed.analysis.requests import JobRequest
from genofed.errors import AuthenticationError
from genofed.federation.signatures import PEER_STATE

node_router = APIRouter()
hub_router = APIRouter()
_T = "analysis"

_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["errorCode", "errorMessage"],
                             "properties": {"errorCode": {"type": "integer"},
                                            "errorMessage": {"type": "string"}}}}}}}}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"errorCode": status, "errorMessage": message}}, status)


# -- node -------------------------------------------------------------------------------------
@node_router.post(ENDPOINT, tags=[_T], summary="A round of a federated analysis (signed peer "
                  "requests only)",
                  responses={200: {"content": {MEDIA_TYPE: {}}, "description": "The node's "
                                   "signed answer: its masked contribution, or why it takes no "
                                   "part"},
                             400: {"description": "Not a round request", **_ERROR},
                             401: {"description": "Not a signed peer request", **_ERROR}})
async def analysis_round(request: Request) -> Response:
    node: AnalysisNode = request.app.state.analysis
    peer = request.scope.get("state", {}).get(PEER_STATE)
    if peer is None:
        return _error(401, "this endpoint answers signed peer requests only")
    try:
        round_request = RoundRequest.from_bytes(await request.body())
    except ProtocolError as exc:
        return _error(400, str(exc))
    answer = await run_in_threadpool(node.answer, peer, round_request,
                                     request.headers.get("authorization"))
    return Response(answer, 200, media_type=MEDIA_TYPE)


# -- coordinator ------------------------------------------------------------------------------
def _owner(request: Request) -> str:
    """The researcher's pseudonym, from their token (the hub's node trusts the same issuers as
    the node itself)."""
    authenticator = request.app.state.analysis_authenticator
    try:
        principal = authenticator.authenticate(request.headers.get("authorization"))
    except AuthenticationError as exc:
        raise _Refused(exc.status, f"bearer token refused: {exc.reason}") from None
    if principal is None:
        raise _Refused(401, "analyses are for logged-in researchers: send your token")
    pseudonym: str = principal.pseudonym
    return pseudonym


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_JOB_ID = r"^[0-9a-f]{16}$"
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@hub_router.post("/analysis/jobs", tags=[_T], status_code=202,
                 summary="Submit a federated analysis (runs in the background)",
                 responses={401: {"description": "No valid token", **_ERROR},
                            403: {"description": "Token refused", **_ERROR}})
async def submit(request: Request, body: Annotated[JobRequest, Body()]) -> Any:
    try:
        owner = await run_in_threadpool(_owner, request)
    except _Refused as exc:
        return _error(exc.status, exc.message)
    try:
        spec = body.to_spec()
    except ValueError as exc:  # the document states every rule: a safety net only
        return _error(400, f"the job spec is not valid: {exc}")
    store: JobStore = request.app.state.jobs
    coordinator: Coordinator = request.app.state.coordinator
    job = store.create(spec, owner)
    coordinator.start(job, request.headers.get("authorization", ""))
    return JSONResponse({"id": job.id, "state": job.state.value,
                         "status": f"/analysis/jobs/{job.id}"}, 202,
                        headers={"Location": f"/analysis/jobs/{job.id}"})


@hub_router.get("/analysis/jobs", tags=[_T], summary="Your analyses, newest first",
                responses={401: {"description": "No valid token", **_ERROR}})
async def list_jobs(request: Request) -> Any:
    try:
        owner = await run_in_threadpool(_owner, request)
    except _Refused as exc:
        return _error(exc.status, exc.message)
    store: JobStore = request.app.state.jobs
    return {"jobs": [job.to_dict() for job in store.of(owner)]}


@hub_router.get("/analysis/jobs/{job_id}", tags=[_T],
                summary="An analysis: state, every node's part, result files",
                responses={401: {"description": "No valid token", **_ERROR},
                           404: {"description": "No such job of yours", **_ERROR}})
async def job_status(request: Request, job_id: str) -> Any:
    try:
        owner = await run_in_threadpool(_owner, request)
        return request.app.state.jobs.get(job_id, owner).to_dict()
    except _Refused as exc:
        return _error(exc.status, exc.message)
    except JobNotFoundError as exc:
        return _error(404, str(exc))


@hub_router.get("/analysis/jobs/{job_id}/files/{name}", tags=[_T],
                summary="A result file of a finished analysis",
                responses={200: {"content": {"application/octet-stream": {}},
                                 "description": "The file"},
                           401: {"description": "No valid token", **_ERROR},
                           404: {"description": "No such job or file", **_ERROR}})
async def job_file(request: Request, job_id: str, name: str) -> Any:
    try:
        owner = await run_in_threadpool(_owner, request)
        job = request.app.state.jobs.get(job_id, owner)
    except _Refused as exc:
        return _error(exc.status, exc.message)
    except JobNotFoundError as exc:
        return _error(404, str(exc))
    if name not in job.files or not _FILE.match(name):
        return _error(404, f"job {job_id} has no result file {name!r}; it has: "
                           f"{', '.join(job.files) or 'none yet'}")
    path = request.app.state.jobs.job_dir(job_id) / "results" / name
    media = {"png": "image/png", "yaml": "application/yaml",
             "tsv": "text/tab-separated-values"}.get(name.rsplit(".", 1)[-1],
                                                     "application/octet-stream")
    return FileResponse(path, media_type=media, filename=name)
