"""`genofed demo`: the README's first command — a three-country network on loopback, and a
researcher's journey through it, printed step by step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from genofed.cli.output import console, fail

#: The question of the demo: women with a seizure disorder (HPO, descendants included).
FILTERS = [{"id": "NCIT:C16576"}, {"id": "HP:0001250", "includeDescendantTerms": True}]
APPLY_FOR = "fi-biobank"
#: The demo's default population history; any other seed gives other cohorts.
DEMO_SEED = 2026


def demo(
    directory: Path = typer.Option(Path("demo"), "--dir", help="Where the cohorts, nodes, "
                                   "issuer and network file go (reused by the next run)."),
    length_mb: float = typer.Option(1.0, "--length-mb", min=0.05, help="Megabases of chr20 "
                                    "simulated (every cohort covers the same region)."),
    scale: float = typer.Option(1.0, "--scale", min=0.05, help="Multiply every cohort's size "
                                "(1 = 80 to 240 individuals per dataset, 600 in all)."),
    seed: int = typer.Option(DEMO_SEED, "--seed", min=0, help="Seed of the one simulated "
                             "population history the cohorts are cut from; a new seed (or "
                             "length or scale) simulates them again."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Keep the services running until "
                              "Ctrl-C (default), or stop once the walkthrough is done."),
) -> None:
    """Build a network of three national nodes (FI, SE, NL) with cohorts in all three access
    tiers, cut from one simulated population history (shared variants, the same planted causal
    variants), a login issuer with a demo researcher and one committee member per node, and
    the coordinator; then walk through discovery across countries, an access application, the
    committee's approval, the visa, record-level and count queries through the network, and
    federated analyses across the three countries (linear GWAS of LDL, logistic GWAS of
    seizures, PCA) whose results land in DIR/results/.

    Everything listens on 127.0.0.1 only; the services stay up until Ctrl-C (or --no-wait).
    """
    from genofed.demo.network import build, serving

    console.rule("[bold]1. Three national nodes, each with its own cohorts")
    try:
        build(directory, seed=seed, length_mb=length_mb, scale=scale,
              report=lambda line: console.print(f"  {line}"))
    except (ValueError, OSError) as exc:
        fail(str(exc))
    console.rule("[bold]2. Starting the network on loopback")
    with serving(directory) as running:
        _services_table(running)
        _walkthrough(running, directory)
        if wait:
            console.print("\nThe services keep running; press [bold]Ctrl-C[/] to stop them.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("Stopping ...")
    console.print("All services stopped.")


def _services_table(running: Any) -> None:
    table = Table(title="Services (loopback only)")
    table.add_column("service")
    table.add_column("URL")
    table.add_row("login issuer (OIDC + GA4GH Passports)", running.issuer.url)
    for node_id, url in running.node_urls.items():
        table.add_row(f"node {node_id}: Beacon, access, catalogue, htsget",
                      f"{url}/beacon  {url}/access  {url}/catalogue")
    table.add_row("coordinator: Beacon network", f"{running.hub_url}/network/beacon")
    table.add_row("portal: search, catalogue, apply, analyse", f"{running.hub_url}/portal/")
    for node_id, url in running.node_urls.items():
        table.add_row(f"portal of node {node_id}: committee, datasets, audit", f"{url}/portal/")
    console.print(table)
    passwords = running.issuer.demo_passwords()
    logins = ", ".join(f"{user} / {password}" for user, password in sorted(passwords.items()))
    if logins:
        console.print(f"Portal logins (generated for this demo): {logins}")


def _walkthrough(running: Any, directory: Path) -> None:
    import httpx
    import jwt

    issuer = running.issuer
    alice = issuer.access_token("alice")
    with httpx.Client(timeout=30) as http:
        console.rule("[bold]3. Discover across countries")
        console.print("Researcher alice (ResearcherStatus visa) asks every country at once: "
                      "[italic]how many women with a seizure disorder (HP:0001250) are there?")
        answer = _network_query(http, running.hub_url, alice, "count")
        _result_table(answer, "Count query through the network")
        console.rule("[bold]4. Apply for access")
        catalogue = http.get(f"{running.node_urls['fi']}/catalogue/datasets/{APPLY_FOR}",
                             params={"format": "jsonld"})
        if catalogue.status_code == 200:
            console.print(f"The FI catalogue describes {APPLY_FOR} (DCAT-AP/HealthDCAT-AP); its "
                          "consent: health/medical/biomedical research, publication required.")
        application = http.post(
            f"{running.node_urls['fi']}/access/applications", headers=_bearer(alice),
            json={"datasets": [APPLY_FOR], "duration_days": 90, "purpose": {
                "terms": ["DUO:0000006"], "text": "Genetics of seizure disorders in women"}})
        if application.status_code != 201:
            fail(f"the application failed: {application.text}")
        document = application.json()
        (assessed,) = document["datasets"]
        console.print(f"Application {document['id']}: DUO pre-assessment for {APPLY_FOR}: "
                      f"[bold]{assessed['assessment']}[/] ({'; '.join(assessed['reasons'])})")
        console.rule("[bold]5. The FI committee decides")
        member = issuer.access_token("dac-fi")
        decision = http.post(
            f"{running.node_urls['fi']}/access/applications/{document['id']}/decision",
            headers=_bearer(member), json={"decision": "approve",
                                           "note": "publication plan checked"})
        if decision.status_code != 200:
            fail(f"the decision failed: {decision.text}")
        (visa,) = decision.json()["visas"]
        claims = jwt.decode(visa["visa"], options={"verify_signature": False})
        console.print(f"Approved by dac-fi. The FI node signed a ControlledAccessGrants visa: "
                      f"value={claims['ga4gh_visa_v1']['value']}, by="
                      f"{claims['ga4gh_visa_v1']['by']}, expires "
                      f"{time.strftime('%Y-%m-%d', time.gmtime(claims['exp']))}")
        console.rule("[bold]6. Records where granted, counts elsewhere")
        console.print("alice logs in again; the login issuer pulls her new visa from the FI "
                      "node into her passport. Each node checks it for itself:")
        alice = issuer.access_token("alice")
        answer = _network_query(http, running.hub_url, alice, "record")
        _result_table(answer, "Record-level query through the network")
        console.rule("[bold]7. Every committee grants its dataset")
        _grant_everything(http, running, alice)
        console.rule("[bold]8. Analyses across three countries; only aggregates leave a node")
        _analyses(running, issuer.access_token("alice"), directory)
        console.rule("[bold]9. Every decision is in each node's own audit trail")
        _audit_table(running)


def _grant_everything(http: Any, running: Any, alice: str) -> None:
    from genofed.demo.analyses import DemoStepError, grant_everything

    try:
        granted = grant_everything(http, running, alice, already={APPLY_FOR})
    except DemoStepError as exc:
        fail(str(exc))
    console.print(f"alice applies to {', '.join(granted)} for a federated analysis; the SE and "
                  "NL committees approve, and each node signs its ControlledAccessGrants visa. "
                  "She logs in again: her passport carries all three.")


def _analyses(running: Any, token: str, directory: Path) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from genofed.cli.output import errors
    from genofed.demo.analyses import run_analyses, top_hits

    console.print("Each job goes to the coordinator; every node checks alice's visa for its "
                  "own dataset, selects its individuals, and sends only masked sums that the "
                  "coordinator can add up but not read one by one.")
    results = directory / "results"
    with Progress(TextColumn("{task.description:<48}"), BarColumn(), TextColumn(
            "{task.fields[stage]}"), TimeElapsedColumn(), console=errors,
            transient=not errors.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def update(title: str, job: dict[str, Any]) -> None:
            state = job.get("progress", {})
            if title not in tasks:
                tasks[title] = progress.add_task(title, total=None, stage="")
            progress.update(tasks[title], total=state.get("steps"),
                            completed=state.get("step", 0),
                            stage=f"{job['state']}: {state.get('stage', '')}")

        outcomes = run_analyses(running, token, results, update)
    table = Table(title=f"Federated analyses (result files in {results}/)")
    for column in ("analysis", "state", "nodes", "individuals", "variants", "files"):
        table.add_column(column)
    for outcome in outcomes:
        nodes = outcome.job.get("progress", {}).get("nodes", {})
        taking_part = outcome.job["participants"]
        table.add_row(outcome.title, outcome.job["state"], ", ".join(taking_part),
                      str(sum(int(nodes[n].get("individuals", 0)) for n in taking_part)),
                      str(outcome.job.get("progress", {}).get("variants", "")),
                      ", ".join(p.name for p in outcome.files if p.suffix != ".png") or
                      outcome.job["message"])
    console.print(table)
    truth = directory / "cohorts" / "pooled" / "truth.json"
    for name, trait, title in (("gwas-ldl.tsv", "quantitative", "LDL cholesterol"),
                               ("gwas-HP_0002069.tsv", "binary", "seizures (HP:0002069)")):
        if not (results / name).is_file():
            continue
        hits, planted = top_hits(results / name, truth, trait)
        hit_table = Table(title=f"Top hits, {title}, beside the planted causal variants")
        for column in ("variant", "beta (ALT)", "p", "planted?"):
            hit_table.add_column(column)
        for hit in hits:
            hit_table.add_row(hit.variant, f"{hit.beta:+.3f}", f"{hit.p:.2e}",
                              hit.planted or "-")
        console.print(hit_table)
        console.print(f"  planted: {'; '.join(planted)}")
    eigenvalues = results / "pca-eigenvalues.tsv"
    if eigenvalues.is_file():
        values = [line.split("\t")[1] for line in eigenvalues.read_text().splitlines()[1:]]
        console.print(f"PCA eigenvalues: {', '.join(values)} (the scores stay at each node, "
                      "ready as covariates pc1..pc5 of a later GWAS)")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _network_query(http: Any, hub_url: str, token: str, granularity: str) -> dict[str, Any]:
    response = http.post(f"{hub_url}/network/beacon/individuals", headers=_bearer(token), json={
        "meta": {"apiVersion": "v2.0"}, "query": {
            "filters": FILTERS, "requestedGranularity": granularity,
            "includeResultsetResponses": "ALL", "pagination": {"skip": 0, "limit": 3}}})
    if response.status_code != 200:
        fail(f"the network query failed ({response.status_code}): {response.text[:300]}")
    document: dict[str, Any] = response.json()
    return document


def _result_table(document: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    for column in ("node", "country", "dataset", "tier", "answered at", "count"):
        table.add_column(column, justify="right" if column == "count" else "left",
                         no_wrap=True)
    records: list[str] = []
    total = 0
    for result_set in document.get("response", {}).get("resultSets", []):
        info = result_set.get("info", {})
        node = info.get("node", {}) if isinstance(info.get("node"), dict) else {}
        count = result_set.get("resultsCount", 0)
        shown = (("yes" if result_set.get("exists") else "no")
                 if result_set.get("returnedGranularity") == "boolean" else
                 f"{count}{' (at least, rounded up)' if result_set.get('countAdjustedTo') else ''}")
        if result_set.get("returnedGranularity") != "boolean":
            total += int(count)
        records += [f"{result_set['id']}: {r.get('id', '?')}"
                    for r in result_set.get("results", [])[:3]]
        table.add_row(str(node.get("id", "?")), str(node.get("country", "?")), result_set["id"],
                      str(info.get("accessTier", "?")),
                      str(result_set.get("returnedGranularity", "?")), shown)
    console.print(table)
    if records:
        console.print("First records: " + ", ".join(records))
    statuses = document.get("info", {}).get("network", {})
    console.print(f"Sum of the counts: {total} (suppressed counts stay suppressed); node status: "
                  f"{_statuses(statuses)}")


def _statuses(network: Any) -> str:
    nodes = network.get("nodes", network) if isinstance(network, dict) else network
    if isinstance(nodes, dict):
        return ", ".join(f"{k}: {v.get('status', v) if isinstance(v, dict) else v}"
                         for k, v in nodes.items())
    if isinstance(nodes, list):
        return ", ".join(f"{n.get('node', '?')} ({n.get('country', '?')}) {n.get('status', '?')}"
                         f" in {n.get('elapsedMs', '?')} ms" for n in nodes if isinstance(n, dict))
    return "?"


def _audit_table(running: Any) -> None:
    from genofed.access.audit import entries, verify
    from genofed.access.governance import Governance
    from genofed.demo.network import NODES

    table = Table(title="Audit trails (pseudonymous, hash-chained)")
    for column in ("node", "records", "allowed", "denied", "record-level allowed", "verifies"):
        table.add_column(column)
    directory = Path(running.issuer.directory).parent
    for node in NODES:
        governance = Governance.open(directory / "nodes" / node.id)
        try:
            governance.audit.flush()
            trail = list(entries(governance.db))
            report = verify(governance.db, governance.audit.seal_key)
        finally:
            governance.close()
        table.add_row(node.id, str(len(trail)), str(sum(e.decision == "allow" for e in trail)),
                      str(sum(e.decision == "deny" for e in trail)),
                      str(sum(e.decision == "allow" and e.action == "beacon.record"
                              for e in trail)),
                      "yes" if report.ok else "NO")
    console.print(table)
