"""The network portal's analysis pages: a researcher's federated jobs, a form to submit a GWAS
(linear or logistic), a PCA or a polygenic score, each job's live progress per node and round,
and its results: Manhattan and QQ plots (Chart.js, with the job's own PNGs without JavaScript), a
top-hits table and the GWAS-SSF downloads.

Every call goes through the hub's analysis API (`/analysis/jobs`, in-process) with the user's
token: the API's checks, and each node's, decide what runs and who sees which job. Result files
are proxied through `/portal/analyses/{job}/files/{name}`, so the browser never holds the token.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from genofed.errors import GenofedError
from genofed.portal.analyse_results import Results, human_bytes, read_results, wanted
from genofed.portal.sessions import Session
from genofed.portal.web import (
    PREFIX,
    PageRefused,
    Site,
    api_error,
    checked_form,
    require_session,
    site_of,
)

router = APIRouter()

_JOB_ID = re.compile(r"^[0-9a-f]{16}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: The job types the form offers, with words for people.
TYPES: dict[str, str] = {
    "gwas-linear": "GWAS, quantitative trait (linear regression)",
    "gwas-logistic": "GWAS, binary trait (logistic regression)",
    "pca": "Principal components (population structure)",
    "prs": "Polygenic score (its distribution; odds ratios for a binary trait)",
    "freq": "Allele frequencies",
}
FINISHED = ("done", "failed")
_HPO = re.compile(r"^HP:\d{7}$")


# -- talking to the API ----------------------------------------------------------------------
async def _call(request: Request, session: Session, method: str, path: str,
                **kwargs: Any) -> httpx.Response:
    async with site_of(request).api(request, session) as api:
        return await api.request(method, path, **kwargs)


def _refusal(response: httpx.Response, what: str) -> PageRefused:
    """The page for an API refusal of a reading request."""
    message = api_error(response)
    if response.status_code == 401:
        return PageRefused(401, "Please log in again",
                           f"The analysis service no longer accepts your login ({message}). "
                           "Log out and log in again, then reload this page.")
    if response.status_code == 404:
        return PageRefused(404, f"No such {what}",
                           f"{message}. Your analyses are listed on the Analyses page.")
    return PageRefused(502 if response.status_code >= 500 else response.status_code,
                       f"The {what} could not be read",
                       f"The analysis service answered: {message}. Try again in a moment.")


def _checked(job_id: str, name: str = "") -> None:
    """A page, not the API's validation error, for an address no job or file can have."""
    if not _JOB_ID.match(job_id) or (name and not _FILE_NAME.match(name)):
        raise PageRefused(404, "No such analysis",
                          f"There is no analysis {job_id!r}"
                          + (f" with a file {name!r}" if name else "")
                          + ". Your analyses are listed on the Analyses page.")


async def _job(request: Request, session: Session, job_id: str) -> dict[str, Any]:
    _checked(job_id)
    response = await _call(request, session, "GET", f"/analysis/jobs/{job_id}")
    if response.status_code != 200:
        raise _refusal(response, "analysis")
    job: dict[str, Any] = response.json()
    return job


async def _jobs(request: Request, session: Session) -> tuple[list[dict[str, Any]], str]:
    """The user's jobs, newest first, or why they cannot be listed."""
    response = await _call(request, session, "GET", "/analysis/jobs")
    if response.status_code != 200:
        return [], api_error(response)
    jobs: list[dict[str, Any]] = response.json().get("jobs", [])
    return jobs, ""


async def _file(request: Request, session: Session, job_id: str,
                name: str) -> httpx.Response:
    return await _call(request, session, "GET", f"/analysis/jobs/{job_id}/files/{name}")


# -- the datasets a job may name ---------------------------------------------------------------
@dataclass(frozen=True)
class DatasetChoice:
    id: str
    name: str
    node: str
    country: str
    tier: str
    #: Whether the user's passport, as the hub reads it, holds a grant for it (a hint: every
    #: node decides for itself).
    granted: bool


async def _dataset_choices(request: Request,
                           session: Session) -> tuple[list[DatasetChoice], str]:
    """The network's datasets that analyses can use (controlled tier), marked where the user
    holds a grant; and a problem to show if they cannot be listed."""
    response = await _call(request, session, "GET", "/network/beacon/datasets",
                           params={"limit": 1000})
    if response.status_code != 200:
        return [], api_error(response)
    granted = await _granted(request, session)
    choices = []
    for collection in response.json().get("response", {}).get("collections", []):
        info = collection.get("info", {}) if isinstance(collection, dict) else {}
        node = info.get("node", {}) if isinstance(info.get("node"), dict) else {}
        if info.get("accessTier") != "controlled":
            continue  # analyses release more than public and registered data may
        choices.append(DatasetChoice(
            str(collection.get("id", "")), str(collection.get("name", "")),
            str(node.get("id", "")), str(node.get("country", "")), "controlled",
            str(collection.get("id", "")) in granted))
    return sorted(choices, key=lambda c: (c.node, c.id)), ""


#: Seconds a node has to list the user's visas (a hint: a slow node is left unmarked).
_VISA_TIMEOUT = 5.0


async def _granted(request: Request, session: Session) -> set[str]:
    """Dataset ids the member nodes hold valid grants (visas) of the user's for: each node's
    `/access/visas` with the user's token, as the login issuer collects them. A hint only: the
    nodes decide when the job runs; a node that does not answer is left out."""
    hub = getattr(request.app.state, "hub", None)
    if hub is None:
        return set()
    try:
        members = list(hub.network.current().members)
    except GenofedError:
        return set()
    async with Site.remote(session) as client:
        answers = await asyncio.gather(*(
            client.get(f"{m.base_url.rstrip('/')}/access/visas", timeout=_VISA_TIMEOUT)
            for m in members), return_exceptions=True)
    granted = set()
    for answer in answers:
        if not isinstance(answer, httpx.Response) or answer.status_code != 200:
            continue
        try:
            tokens = answer.json().get("ga4gh_passport_v1", [])
        except ValueError:
            continue
        for token in tokens if isinstance(tokens, list) else []:
            try:  # the node's own signature: what it says of itself, read as a hint
                claims = jwt.decode(str(token), options={"verify_signature": False})
            except jwt.PyJWTError:
                continue
            visa = claims.get("ga4gh_visa_v1", {})
            if isinstance(visa, dict) and visa.get("type") == "ControlledAccessGrants":
                granted.add(str(visa.get("value", "")))
    return granted


# -- the form --------------------------------------------------------------------------------
def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _texts(form: FormData, key: str) -> list[str]:
    return [v.strip() for v in form.getlist(key) if isinstance(v, str) and v.strip()]


def _split(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", value) if part]


def _number(value: str) -> float | int | str:
    """A number typed in a form, as JSON wants it; left as text when it is none (the API then
    says what it expects)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def form_values(form: FormData) -> dict[str, Any]:
    """What the user typed, to fill the form again."""
    values: dict[str, Any] = {key: _text(form, key) for key in (
        "type", "name", "trait", "more_covariates", "pca_job", "sex", "min_age", "max_age",
        "hpo", "assembly", "min_mac", "components", "min_maf", "scoring_file", "bins",
        "quantiles")}
    values["covariates"] = _texts(form, "covariates")
    values["datasets"] = [d for value in _texts(form, "datasets") for d in _split(value)]
    return values


DEFAULTS: dict[str, Any] = {
    "type": "gwas-linear", "name": "", "trait": "", "more_covariates": "", "pca_job": "",
    "sex": "", "min_age": "", "max_age": "", "hpo": "", "assembly": "GRCh38", "min_mac": "10",
    "components": "10", "min_maf": "0.05", "scoring_file": "", "bins": "20", "quantiles": "5",
    "covariates": ["sex", "age"], "datasets": []}


def job_request(values: dict[str, Any]) -> dict[str, Any]:
    """The body of `POST /analysis/jobs` for the form's values. Only the fields of the chosen
    type are sent; everything else about them (patterns, ranges, combinations) the API checks
    and explains."""
    kind = values["type"]
    body: dict[str, Any] = {"type": kind}
    if values["name"]:
        body["name"] = values["name"]
    if values["datasets"]:
        body["datasets"] = values["datasets"]
    cohort: dict[str, Any] = {}
    if values["sex"]:
        cohort["sex"] = values["sex"]
    if values["min_age"]:
        cohort["minAge"] = _number(values["min_age"])
    if values["max_age"]:
        cohort["maxAge"] = _number(values["max_age"])
    if values["hpo"]:
        cohort["hpo"] = _split(values["hpo"])
    if cohort:
        body["cohort"] = cohort
    if values["assembly"]:
        body["assembly"] = values["assembly"]
    if values["min_mac"]:
        body["minMac"] = _number(values["min_mac"])
    trait = values["trait"]
    if kind == "gwas-linear":
        body["trait"] = {"measurement": trait}
    elif kind == "gwas-logistic":
        body["trait"] = {"hpo": trait} if _HPO.match(trait) else {"disease": trait}
    elif kind == "prs" and trait:
        body["trait"] = {"hpo": trait} if _HPO.match(trait) else {"measurement": trait}
    if kind in ("gwas-linear", "gwas-logistic"):
        covariates = [*values["covariates"], *_split(values["more_covariates"])]
        if covariates:
            body["covariates"] = covariates
        if values["pca_job"]:
            body["pcaJob"] = values["pca_job"]
    if kind == "pca":
        pca: dict[str, Any] = {}
        if values["components"]:
            pca["components"] = _number(values["components"])
        if values["min_maf"]:
            pca["minMaf"] = _number(values["min_maf"])
        body["pca"] = pca
    if kind == "prs":
        prs: dict[str, Any] = {"scoringFile": values["scoring_file"]}
        if values["bins"]:
            prs["bins"] = _number(values["bins"])
        if values["quantiles"]:
            prs["quantiles"] = _number(values["quantiles"])
        body["prs"] = prs
    return body


def _form_problem(values: dict[str, Any]) -> str | None:
    """What the form lacks before anything is sent (the API checks the rest)."""
    if values["type"] not in TYPES:
        return "Choose the kind of analysis to run."
    if values["type"] in ("gwas-linear", "gwas-logistic") and not values["trait"]:
        return ("A GWAS needs a trait: a measurement code such as LOINC:2089-1 for a linear "
                "GWAS, an HPO term such as HP:0002069 or a disease code for a logistic one.")
    if values["type"] == "prs" and not values["scoring_file"]:
        return "A polygenic score needs a scoring file: paste a PGS Catalog scoring file."
    return None


async def _list_page(request: Request, session: Session, values: dict[str, Any],
                     error: str = "", status: int = 200) -> Response:
    jobs, jobs_problem = await _jobs(request, session)
    datasets, datasets_problem = await _dataset_choices(request, session)
    pca_jobs = [j for j in jobs if j.get("type") == "pca" and j.get("state") == "done"]
    return site_of(request).render(
        request, "analyse/list.html", status, title="Analyses", jobs=jobs,
        jobs_problem=jobs_problem, datasets=datasets, datasets_problem=datasets_problem,
        pca_jobs=pca_jobs, values=values, error=error, types=TYPES, describe=describe)


def describe(job: dict[str, Any]) -> str:
    """A job in a few words: its type and trait."""
    spec = job.get("spec", {})
    trait = spec.get("trait") or {}
    name = next(iter(trait.values()), "") if isinstance(trait, dict) else ""
    kind = {"gwas-linear": "linear GWAS", "gwas-logistic": "logistic GWAS", "pca": "PCA",
            "prs": "polygenic score", "freq": "allele frequencies"}.get(
        str(job.get("type")), str(job.get("type")))
    return f"{kind} of {name}" if name else kind


@router.get("/analyses")
async def analyses(request: Request) -> Response:
    session = require_session(request)
    return await _list_page(request, session, dict(DEFAULTS))


async def _uploaded(form: FormData, key: str) -> str:
    """The text of an uploaded file (empty when none was chosen)."""
    upload = form.get(key)
    if isinstance(upload, str) or upload is None:
        return ""
    data = await upload.read()
    return data.decode("utf-8", errors="replace")


@router.post("/analyses")
async def submit(request: Request) -> Response:
    session, form = await checked_form(request)
    values = form_values(form)
    try:
        scoring = await _uploaded(form, "scoring_upload")
    finally:
        await form.close()  # an upload is spooled to a temporary file
    if scoring.strip():
        values["scoring_file"] = scoring
    problem = _form_problem(values)
    if problem is not None:
        return await _list_page(request, session, values, problem, 400)
    response = await _call(request, session, "POST", "/analysis/jobs",
                           json=job_request(values))
    if response.status_code != 202:
        message = api_error(response)
        status = 400 if response.status_code in (400, 422) else response.status_code
        return await _list_page(request, session, values,
                                f"The analysis service did not accept the job: {message}",
                                status)
    job_id = str(response.json()["id"])
    return RedirectResponse(f"{PREFIX}/analyses/{job_id}", 303)


# -- a job -----------------------------------------------------------------------------------
def progress_view(job: dict[str, Any]) -> dict[str, Any]:
    """What the progress panel shows: the stage, steps done of how many, and each node."""
    progress = job.get("progress", {}) or {}
    traffic = progress.get("traffic", {}) or {}
    nodes = []
    for node_id, node in sorted((progress.get("nodes", {}) or {}).items()):
        moved = traffic.get(node_id, {})
        nodes.append({"id": node_id, "country": node.get("country", ""),
                      "status": node.get("status", ""), "message": node.get("message", ""),
                      "individuals": node.get("individuals"),
                      "datasets": node.get("datasets", []),
                      "rounds": moved.get("rounds", 0),
                      "sent": human_bytes(int(moved.get("bytesSent", 0))),
                      "received": human_bytes(int(moved.get("bytesReceived", 0)))})
    return {"stage": progress.get("stage", "waiting for the coordinator"),
            "step": progress.get("step"), "steps": progress.get("steps"),
            "attempt": progress.get("attempt", 0), "variants": progress.get("variants"),
            "released": progress.get("released"), "nodes": nodes,
            "finished": job.get("state") in FINISHED}


@router.get("/analyses/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    session = require_session(request)
    job = await _job(request, session, job_id)
    results = await _results(request, session, job) if job.get("state") == "done" else None
    needs_charts = results is not None and bool(results.charts)
    return site_of(request).render(
        request, "analyse/job.html", title=f"Analysis {job_id}", job=job, describe=describe,
        progress=progress_view(job), results=results, needs_charts=needs_charts)


@router.get("/analyses/{job_id}/progress")
async def job_progress(request: Request, job_id: str) -> Response:
    """The progress panel alone (htmx polls it every 2 s while the job runs; when the job has
    finished, the whole page is reloaded once to show its results)."""
    session = require_session(request)
    job = await _job(request, session, job_id)
    response = site_of(request).render(request, "analyse/_progress.html", job=job,
                                       progress=progress_view(job))
    if job.get("state") in FINISHED and request.headers.get("hx-request") == "true":
        response.headers["HX-Refresh"] = "true"
    return response


@router.get("/analyses/{job_id}/files/{name}")
async def job_file(request: Request, job_id: str, name: str) -> Response:
    session = require_session(request)
    _checked(job_id, name)
    response = await _file(request, session, job_id, name)
    if response.status_code != 200:
        raise _refusal(response, "result file")
    headers = {}
    if "content-disposition" in response.headers:
        headers["content-disposition"] = response.headers["content-disposition"]
    media = response.headers.get("content-type", "application/octet-stream")
    return Response(response.content, 200, headers=headers, media_type=media)


# -- results ---------------------------------------------------------------------------------
#: Results read from finished jobs' files, by (job, last update): they never change. Only
#: consulted after the API has shown the job to the user.
_CACHE: OrderedDict[tuple[str, str], Results] = OrderedDict()
_CACHE_SIZE = 16


async def _results(request: Request, session: Session, job: dict[str, Any]) -> Results:
    key = (str(job["id"]), str(job.get("updated", "")))
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached
    contents: dict[str, bytes] = {}
    for name in job.get("files", []):
        if wanted(str(job.get("type")), str(name)):
            response = await _file(request, session, str(job["id"]), str(name))
            if response.status_code == 200:
                contents[str(name)] = response.content
    results = await run_in_threadpool(read_results, job, contents)
    _CACHE[key] = results
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return results
