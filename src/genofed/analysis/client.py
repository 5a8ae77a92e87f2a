"""A researcher's client for the coordinator's analysis API (`/analysis/jobs`): submit a job,
follow it, fetch its result files. Used by `genofed analysis`, the demo and the tests.

    with HubClient("http://127.0.0.1:8090", token) as hub:
        job = hub.submit({"type": "gwas-linear", "trait": {"measurement": "LOINC:2089-1"}})
        done = hub.wait(job["id"])
        hub.download(job["id"], Path("results"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from genofed.analysis.requests import JobRequest
from genofed.analysis.spec import JobSpec
from genofed.errors import GenofedError

_REQUEST: TypeAdapter[Any] = TypeAdapter(JobRequest)
#: States after which a job changes no more.
FINISHED = ("done", "failed")


class AnalysisClientError(GenofedError):
    """The coordinator refused a request, or could not be reached."""


class HubClient:
    """One researcher's session with a coordinator (their bearer token on every request)."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AnalysisClientError(
                f"cannot reach the coordinator at {self.url}: {exc}",
                hint="is `genofed hub serve` running there?") from None
        if response.status_code >= 400:
            raise AnalysisClientError(f"the coordinator answered {response.status_code} to "
                                      f"{method} {path}: {_message(response)}")
        return response

    def submit(self, spec: JobSpec | dict[str, Any]) -> dict[str, Any]:
        """Submit a job; returns {"id", "state", "status"} at once (it runs in the background).
        A spec is checked here first (pydantic's ValidationError says what is wrong)."""
        if isinstance(spec, JobSpec):
            spec = {"type": spec.type.value, **spec.model_dump(
                mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)}
        body = _REQUEST.dump_json(_REQUEST.validate_python(spec), by_alias=True,
                                  exclude_none=True)
        answer: dict[str, Any] = self._request(
            "POST", "/analysis/jobs", content=body,
            headers={"content-type": "application/json"}).json()
        return answer

    def jobs(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._request("GET", "/analysis/jobs").json()["jobs"]
        return found

    def status(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._request("GET", f"/analysis/jobs/{job_id}").json()
        return job

    def wait(self, job_id: str, *, timeout: float = 3600.0, interval: float = 0.5,
             on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the job is done or failed (its last status either way); TimeoutError
        after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if on_update is not None:
                on_update(job)
            if job["state"] in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout:g} s")
            time.sleep(interval)

    def download(self, job_id: str, directory: Path,
                 rename: Callable[[str], str] | None = None) -> list[Path]:
        """Every result file of a finished job into `directory` (optionally renamed)."""
        job = self.status(job_id)
        if job["state"] != "done":
            raise AnalysisClientError(f"job {job_id} is {job['state']}, not done: "
                                      f"{job.get('message') or 'no result yet'}")
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name in job["files"]:
            target = directory / (rename(name) if rename is not None else name)
            target.write_bytes(self._request(
                "GET", f"/analysis/jobs/{job_id}/files/{name}").content)
            written.append(target)
        return written


def _message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and "errorMessage" in error:
            return str(error["errorMessage"])
        if "detail" in document:
            return str(document["detail"])
    return response.text[:300]
