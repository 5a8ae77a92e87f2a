"""The network portal's analysis pages, against the served demo network: a researcher with
grants submits a GWAS through the form, follows its progress, and sees its plots' data, top hits
and downloads; the API's refusals come back on the form; others never see her jobs.

The researcher is a user made for this module (an `analyst-...` with a grant from every
committee), so that no other test's view of alice changes.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page

from genofed.demo.analyses import ANALYSED, grant_everything
from genofed.portal.analyse import job_request, progress_view
from genofed.portal.analyse_results import MAX_POINTS, THIN_ABOVE, read_results, thin
from genofed.portal.web import _environment
from tests.portal.browser import NewContext, check_page
from tests.portal.network import PortalNetwork, csrf_token, login

JOB_LINK = re.compile(r"/portal/analyses/([0-9a-f]{16})$")


@dataclass(frozen=True)
class Analyst:
    user: str
    client: httpx.Client


@pytest.fixture(scope="module")
def analyst(portal_network: PortalNetwork) -> Iterator[Analyst]:
    """A researcher of their own, granted every node's analysed dataset, logged in to the hub's
    portal."""
    running = portal_network.running
    user = f"analyst-{secrets.token_hex(3)}"
    running.issuer.add_demo_user(user, name="Analyst", researcher_status=True)
    with httpx.Client(timeout=60) as http:
        granted = grant_everything(http, running, running.issuer.access_token(user), set())
    assert sorted(granted) == sorted(ANALYSED.values())
    client = login(portal_network, portal_network.hub, user)  # the passport now has the visas
    try:
        yield Analyst(user, client)
    finally:
        client.close()


def _form(client: httpx.Client, base: str, **fields: str | list[str]) -> httpx.Response:
    page = client.get(f"{base}/portal/analyses")
    assert page.status_code == 200, page.text
    data: dict[str, Any] = {"csrf_token": csrf_token(page.text), **fields}
    return client.post(f"{base}/portal/analyses", data=data, follow_redirects=False)


def _state(html: str) -> str:
    found = re.search(r'State: <span class="status status-([a-z-]+)">', html)
    assert found, html
    return found.group(1)


@dataclass(frozen=True)
class Finished:
    job_id: str
    #: The progress panel as first seen right after the job was submitted.
    first_progress: httpx.Response
    page: httpx.Response


@pytest.fixture(scope="module")
def finished_gwas(portal_network: PortalNetwork, analyst: Analyst) -> Finished:
    """A linear GWAS of LDL submitted through the form and followed to its end."""
    base = portal_network.hub
    answer = _form(analyst.client, base, type="gwas-linear", trait="LOINC:2089-1",
                   covariates=["sex", "age"], datasets=sorted(ANALYSED.values()),
                   name="ldl-portal", min_mac="10", assembly="GRCh38")
    assert answer.status_code == 303, answer.text
    found = JOB_LINK.search(answer.headers["location"])
    assert found, answer.headers["location"]
    job_id = found.group(1)
    first = analyst.client.get(f"{base}/portal/analyses/{job_id}/progress",
                               headers={"HX-Request": "true"})
    return Finished(job_id, first, _finished(analyst.client, base, job_id))


def _finished(client: httpx.Client, base: str, job_id: str) -> httpx.Response:
    """The job's page once the job is done (polling its progress panel as htmx would)."""
    deadline = time.monotonic() + 300
    while _state(client.get(f"{base}/portal/analyses/{job_id}/progress").text) not in (
            "done", "failed"):
        assert time.monotonic() < deadline, f"job {job_id} did not finish in 5 minutes"
        time.sleep(0.5)
    page = client.get(f"{base}/portal/analyses/{job_id}")
    assert page.status_code == 200, page.text
    assert _state(page.text) == "done", page.text
    return page


def _island(html: str, island: str) -> dict[str, Any]:
    found = re.search(rf'<script type="application/json" id="{island}">(.*?)</script>', html,
                      re.S)
    assert found, f"no data island {island}"
    config: dict[str, Any] = json.loads(found.group(1))
    return config


def _table(html: str, caption: str) -> list[list[str]]:
    found = re.search(rf"<caption>{re.escape(caption)}[^<]*</caption>(.*?)</table>", html, re.S)
    assert found, f"no table {caption!r}"
    body = found.group(1).split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", cell).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


# -- submitting and following a job ------------------------------------------------------------
def test_a_gwas_submitted_through_the_form_runs_and_shows_progress(
        finished_gwas: Finished) -> None:
    page = finished_gwas.page.text
    nodes = _table(page, "Each node's part")
    assert {row[0] for row in nodes} == {"fi", "se", "nl"}
    assert all(row[2] == "ok" for row in nodes), nodes
    assert all(int(row[5]) >= 1 for row in nodes), nodes  # rounds answered
    assert "done over fi, nl, se" in page
    # Polled while running (every 2 s), then the page reloads once to show the results.
    first = finished_gwas.first_progress
    assert first.status_code == 200
    if _state(first.text) in ("queued", "running"):
        assert 'hx-trigger="every 2s"' in first.text
        assert "HX-Refresh" not in first.headers
    else:
        assert first.headers.get("HX-Refresh") == "true"
    assert 'hx-trigger' not in page  # done: no more polling


def test_a_finished_job_reloads_the_page_once(portal_network: PortalNetwork, analyst: Analyst,
                                              finished_gwas: Finished) -> None:
    url = f"{portal_network.hub}/portal/analyses/{finished_gwas.job_id}/progress"
    polled = analyst.client.get(url, headers={"HX-Request": "true"})
    assert polled.headers.get("HX-Refresh") == "true"
    assert "hx-trigger" not in polled.text
    plain = analyst.client.get(url)
    assert "HX-Refresh" not in plain.headers and "<html" not in plain.text  # a fragment


def test_a_running_job_is_polled_every_two_seconds() -> None:
    template = _environment().get_template("analyse/_progress.html")
    running = {"id": "0123456789abcdef", "state": "running", "message": "", "progress": {
        "stage": "statistics 1", "step": 1, "steps": 3, "attempt": 0, "variants": 2769,
        "nodes": {"fi": {"country": "FI", "status": "ok", "individuals": 120,
                         "datasets": ["fi-biobank"], "message": ""}},
        "traffic": {"fi": {"bytesSent": 2_500_000, "bytesReceived": 1500, "rounds": 2}}}}
    html = template.render(job=running, progress=progress_view(running))
    assert 'hx-get="/portal/analyses/0123456789abcdef/progress" hx-trigger="every 2s"' in html
    assert '<progress id="job-steps" max="3" value="1">' in html
    assert "2.5 MB" in html and "1.5 kB" in html
    done = {**running, "state": "done", "message": "done over fi, se"}
    assert "hx-trigger" not in template.render(job=done, progress=progress_view(done))


def test_the_job_page_shows_plots_top_hits_and_downloads(portal_network: PortalNetwork,
                                                         analyst: Analyst,
                                                         finished_gwas: Finished) -> None:
    page = finished_gwas.page.text
    job = finished_gwas.job_id
    hits = _table(page, "Top hits")
    assert 1 <= len(hits) <= 20
    p_values = [float(row[7]) for row in hits]
    assert p_values == sorted(p_values) and p_values[0] < 1e-3
    assert all(row[1] == "20" and re.fullmatch(r"20-\d+-[ACGT]+-[ACGT]+", row[0])
               for row in hits)
    manhattan = _island(page, "manhattan-data")
    assert manhattan["type"] == "scatter"
    points = [p for d in manhattan["data"]["datasets"] if d.get("type") != "line"
              for p in d["data"]]
    assert len(points) > 100
    assert max(p["y"] for p in points) == pytest.approx(-math.log10(p_values[0]), abs=0.01)
    qq = _island(page, "qq-data")
    assert len(qq["data"]["datasets"][0]["data"]) == len(points)
    for island in ("manhattan-data", "qq-data"):
        assert re.search(rf'<canvas data-chart="{island}" role="img" aria-label="[^"]+">', page)
    assert f'src="/portal/analyses/{job}/files/gwas-ldl-portal-manhattan.png"' in page
    assert "Genomic inflation" in page
    # The downloads, proxied with the user's token.
    client, base = analyst.client, portal_network.hub
    data = client.get(f"{base}/portal/analyses/{job}/files/gwas-ldl-portal.tsv")
    assert data.status_code == 200
    assert data.text.startswith("chromosome\tbase_pair_location\teffect_allele\tother_allele")
    assert len(data.text.splitlines()) - 1 >= len(points)
    meta = client.get(f"{base}/portal/analyses/{job}/files/gwas-ldl-portal.tsv-meta.yaml")
    assert meta.status_code == 200 and "file_type: GWAS-SSF" in meta.text
    png = client.get(f"{base}/portal/analyses/{job}/files/gwas-ldl-portal-qq.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    for name in ("gwas-ldl-portal.tsv", "gwas-ldl-portal.tsv-meta.yaml"):
        assert f'href="/portal/analyses/{job}/files/{name}"' in page
    missing = client.get(f"{base}/portal/analyses/{job}/files/nothing.tsv")
    assert missing.status_code == 404 and "has no result file" in missing.text
    for path in (f"/portal/analyses/{job}/files/.hidden", "/portal/analyses/not-a-job"):
        wrong = client.get(base + path)
        assert wrong.status_code == 404 and "No such analysis" in wrong.text, path


def test_the_job_is_listed_with_its_state(portal_network: PortalNetwork, analyst: Analyst,
                                          finished_gwas: Finished) -> None:
    page = analyst.client.get(f"{portal_network.hub}/portal/analyses")
    assert page.status_code == 200
    assert f'href="/portal/analyses/{finished_gwas.job_id}">ldl-portal</a>' in page.text
    assert "linear GWAS of LOINC:2089-1" in page.text
    # The datasets offered are the network's controlled ones, marked where each node holds a
    # grant of the user's.
    offered = re.findall(r'name="datasets" value="([^"]+)">\s*<label[^>]*>([^<]*)(<strong>)?',
                         page.text)
    assert sorted(d for d, _, _ in offered) == sorted(ANALYSED.values())
    assert all(marked for _, _, marked in offered), offered
    newcomer = f"newcomer-{secrets.token_hex(3)}"
    portal_network.running.issuer.add_demo_user(newcomer, researcher_status=True)
    other = login(portal_network, portal_network.hub, newcomer)
    try:
        page = other.get(f"{portal_network.hub}/portal/analyses")
        assert page.status_code == 200 and "granted to you" not in page.text
    finally:
        other.close()


def test_a_pca_shows_its_eigenvalues_and_offers_its_components(portal_network: PortalNetwork,
                                                               analyst: Analyst) -> None:
    base = portal_network.hub
    answer = _form(analyst.client, base, type="pca", components="3", min_maf="0.05",
                   datasets=sorted(ANALYSED.values()), min_mac="10", assembly="GRCh38")
    assert answer.status_code == 303, answer.text
    found = JOB_LINK.search(answer.headers["location"])
    assert found
    job_id = found.group(1)
    page = _finished(analyst.client, base, job_id).text
    eigenvalues = _table(page, "Eigenvalues")
    assert [row[0] for row in eigenvalues] == ["pc1", "pc2", "pc3"]
    values = [float(row[1]) for row in eigenvalues]
    assert values == sorted(values, reverse=True) and values[0] > 0
    chart = _island(page, "pca-data")
    assert chart["data"]["labels"] == ["pc1", "pc2", "pc3"]
    assert "Converged" in page and 'href="/portal/analyses/' + job_id + \
        '/files/pca-loadings.tsv"' in page
    listing = analyst.client.get(f"{base}/portal/analyses").text
    assert f'<a href="/portal/analyses/{job_id}">{job_id}</a>' in listing  # unnamed: its id
    assert f'<option value="{job_id}">' in listing  # offered for pc1..pcN covariates


# -- refusals ------------------------------------------------------------------------------------
def test_an_invalid_job_shows_the_api_message(portal_network: PortalNetwork,
                                              analyst: Analyst) -> None:
    answer = _form(analyst.client, portal_network.hub, type="gwas-linear", trait="LDL",
                   covariates=["sex"], min_mac="10")
    assert answer.status_code == 400
    assert "did not accept the job" in answer.text and "measurement" in answer.text
    assert 'value="LDL"' in answer.text  # the form keeps what was typed
    bad_covariate = _form(analyst.client, portal_network.hub, type="gwas-linear",
                          trait="LOINC:2089-1", covariates=["sex"], more_covariates="pc2")
    assert bad_covariate.status_code == 400 and "pcaJob" in bad_covariate.text
    no_trait = _form(analyst.client, portal_network.hub, type="gwas-logistic", trait="")
    assert no_trait.status_code == 400 and "A GWAS needs a trait" in no_trait.text


def test_a_form_without_its_csrf_token_is_refused(portal_network: PortalNetwork,
                                                  analyst: Analyst) -> None:
    answer = analyst.client.post(f"{portal_network.hub}/portal/analyses",
                                 data={"type": "pca"}, follow_redirects=False)
    assert answer.status_code == 403 and "nothing was changed" in answer.text


def test_an_anonymous_user_is_sent_to_log_in(portal_network: PortalNetwork,
                                             finished_gwas: Finished) -> None:
    with httpx.Client(timeout=30) as anonymous:
        for path in ("/portal/analyses", f"/portal/analyses/{finished_gwas.job_id}",
                     f"/portal/analyses/{finished_gwas.job_id}/files/gwas-ldl-portal.tsv"):
            answer = anonymous.get(portal_network.hub + path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/portal/login?next=%2Fportal%2F")


def test_another_user_does_not_see_the_job(portal_network: PortalNetwork,
                                           finished_gwas: Finished) -> None:
    other = login(portal_network, portal_network.hub, "dana")
    try:
        job = finished_gwas.job_id
        page = other.get(f"{portal_network.hub}/portal/analyses/{job}")
        assert page.status_code == 404 and "Your analyses are listed" in page.text
        data = other.get(f"{portal_network.hub}/portal/analyses/{job}/files/gwas-ldl-portal.tsv")
        assert data.status_code == 404
        listed = other.get(f"{portal_network.hub}/portal/analyses")
        assert job not in listed.text
    finally:
        other.close()


# -- the pieces, without a network -----------------------------------------------------------
def test_the_form_becomes_the_api_request() -> None:
    values = {"type": "gwas-logistic", "name": "", "trait": "HP:0002069",
              "more_covariates": "LOINC:2089-1, pc1", "pca_job": "0123456789abcdef",
              "sex": "female", "min_age": "40", "max_age": "", "hpo": "", "assembly": "GRCh38",
              "min_mac": "20", "components": "10", "min_maf": "0.05", "scoring_file": "",
              "bins": "20", "quantiles": "5", "covariates": ["sex"], "datasets": []}
    assert job_request(values) == {
        "type": "gwas-logistic", "cohort": {"sex": "female", "minAge": 40},
        "assembly": "GRCh38", "minMac": 20, "trait": {"hpo": "HP:0002069"},
        "covariates": ["sex", "LOINC:2089-1", "pc1"], "pcaJob": "0123456789abcdef"}
    pca = job_request({**values, "type": "pca", "components": "5", "min_age": "forty"})
    assert pca["pca"] == {"components": 5, "minMaf": 0.05} and "trait" not in pca
    assert pca["cohort"]["minAge"] == "forty"  # the API explains what it wants
    assert job_request({**values, "type": "gwas-logistic", "trait": "MONDO:0005027"})[
        "trait"] == {"disease": "MONDO:0005027"}


def _gwas_ssf(rows: int, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=rows)
    p[:25] = 10.0 ** -rng.uniform(3, 12, size=25)
    lines = ["chromosome\tbase_pair_location\teffect_allele\tother_allele\tbeta\t"
             "standard_error\teffect_allele_frequency\tp_value\tn"]
    for i in range(rows):
        contig = 1 + i * 3 // rows
        lines.append(f"{contig}\t{1000 + i * 10}\tA\tG\t0.1\t0.05\t0.2\t"
                     f"{'NA' if i == rows - 1 else f'{p[i]:.10g}'}\t500")
    return ("\n".join(lines) + "\n").encode()


def test_large_results_are_thinned_where_p_is_large() -> None:
    rows = 30_000
    job = {"type": "gwas-linear", "files": ["gwas-x.tsv", "gwas-x-manhattan.png"]}
    results = read_results(job, {"gwas-x.tsv": _gwas_ssf(rows)})
    manhattan = next(c for c in results.charts if c.id == "manhattan-data")
    assert manhattan.png == "gwas-x-manhattan.png"
    groups = [d for d in manhattan.config["data"]["datasets"] if d.get("type") != "line"]
    assert [d["label"] for d in groups] == ["chromosome 1", "chromosome 2", "chromosome 3"]
    drawn = [p for d in groups for p in d["data"]]
    assert MAX_POINTS * 0.9 < len(drawn) <= MAX_POINTS * 1.1
    smallest = sorted(drawn, key=lambda p: -p["y"])
    assert len([p for p in drawn if p["y"] >= -math.log10(THIN_ABOVE)]) >= 25
    assert smallest[0]["y"] > 3
    # chromosomes end to end: chromosome 2's points lie right of chromosome 1's
    assert max(p["x"] for p in groups[0]["data"]) < min(p["x"] for p in groups[1]["data"])
    (hits,) = results.tables
    assert len(hits.rows) == 20
    ps = [float(row[7]) for row in hits.rows]
    assert ps == sorted(ps) and ps[-1] < 1e-3
    indices, thinned = thin(np.linspace(0, 1, 500))
    assert not thinned and len(indices) == 500


def test_pca_and_prs_results_become_tables_and_charts() -> None:
    pca = read_results({"type": "pca", "files": ["pca-eigenvalues.tsv", "pca-meta.yaml",
                                                 "pca-eigenvalues.png"]}, {
        "pca-eigenvalues.tsv": b"component\teigenvalue\npc1\t4.5\npc2\t2.25\n",
        "pca-meta.yaml": b"individuals: 280\nvariants: 400\nconverged: true\n"})
    assert ("Converged", "yes") in pca.facts and ("Individuals", "280") in pca.facts
    assert pca.charts[0].config["data"]["datasets"][0]["data"] == [4.5, 2.25]
    assert pca.charts[0].png == "pca-eigenvalues.png"
    assert pca.tables[0].rows == [["pc1", "4.5"], ["pc2", "2.25"]]
    prs = read_results({"type": "prs", "files": ["prs-summary.tsv", "prs-distribution.tsv"]}, {
        "prs-summary.tsv": b"group\tindividuals\tmean\tsd\nall\t280\t0.5\t1.25\n",
        "prs-distribution.tsv": b"group\tscore_from\tscore_to\tindividuals\n"
                                b"all\t-inf\t0\t12\nall\t0\t1\tNA\nmale\t0\t1\t9\n"})
    assert prs.tables[0].rows == [["all", "280", "0.5", "1.25"]]
    assert prs.charts[0].config["data"]["datasets"][0]["data"] == [12.0, 0.0]
    assert prs.tables[1].rows == [["-inf", "0", "12"], ["0", "1", "NA"]]


# -- in a browser --------------------------------------------------------------------------------
def browser_login(page: Page, network: PortalNetwork, base: str, user: str,
                  next_path: str) -> None:
    page.goto(f"{base}/portal/login?next={next_path}")
    page.fill("#username", user)
    page.fill("#password", network.password(user))
    page.click("button[value=sign-in]")
    page.wait_for_url(f"{base}{next_path}")


def test_the_pages_in_a_browser(new_context: NewContext, portal_network: PortalNetwork,
                                analyst: Analyst, finished_gwas: Finished) -> None:
    tab = new_context(base_url=portal_network.hub).new_page()
    browser_login(tab, portal_network, portal_network.hub, analyst.user, "/portal/analyses")
    check_page(tab, "analyses")
    tab.goto(f"/portal/analyses/{finished_gwas.job_id}")
    tab.wait_for_function("() => window.Chart && Chart.getChart("
                          "document.querySelector('canvas[data-chart=\"manhattan-data\"]'))")
    drawn = tab.evaluate("Chart.getChart(document.querySelector("
                         "'canvas[data-chart=\"qq-data\"]')).data.datasets[0].data.length")
    assert drawn > 100
    check_page(tab, "analysis-gwas")
