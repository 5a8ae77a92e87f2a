"""`genofed analysis submit | status | result | list`: a researcher's federated analyses, run by
the network's coordinator (`genofed hub serve`) over every node that lets them take part."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from genofed.cli.output import Column, console, errors, fail, json_option, print_json, print_table

if TYPE_CHECKING:
    from genofed.analysis.client import HubClient

app = typer.Typer(help="Federated analyses: allele frequencies, GWAS (linear, logistic), PCA and "
                  "polygenic scores across every node you hold a grant at, where only masked "
                  "aggregates leave a node and the result equals the pooled analysis.",
                  no_args_is_help=True)

HUB_ENV = "GENOFED_HUB"
TOKEN_ENV = "GENOFED_TOKEN_FILE"


def _hub_option() -> Any:
    return typer.Option("http://127.0.0.1:8090", "--hub", envvar=HUB_ENV,
                        help="The coordinator's URL (`genofed hub serve`).")


def _token_option() -> Any:
    return typer.Option(..., "--token-file", envvar=TOKEN_ENV, help="A file holding your bearer "
                        "token (access token or Passport); each node checks your visas in it.")


def _client(hub: str, token_file: Path) -> HubClient:
    from genofed.analysis.client import HubClient

    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        fail(f"cannot read the token file: {exc}", "log in and save your token, e.g. "
             "`genofed issuer token ISSUER_DIR --user NAME > me.token`")
    if not token:
        fail(f"{token_file} is empty", "save your bearer token in it")
    return HubClient(hub, token)


def _spec(spec_file: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """The job spec: a JSON file, or the options given (the options win field by field)."""
    spec: dict[str, Any] = {}
    if spec_file is not None:
        try:
            text = sys.stdin.read() if str(spec_file) == "-" else spec_file.read_text()
            spec = json.loads(text)
        except (OSError, ValueError) as exc:
            fail(f"cannot read the job spec {spec_file}: {exc}")
        if not isinstance(spec, dict):
            fail(f"{spec_file}: a job spec is a JSON object")
    cohort = dict(spec.get("cohort", {}))
    for name in ("sex", "minAge", "maxAge"):
        if options[name] is not None:
            cohort[name] = options[name]
    if options["cohortHpo"]:
        cohort["hpo"] = options["cohortHpo"]
    if cohort:
        spec["cohort"] = cohort
    traits = {k: options[k] for k in ("measurement", "hpo", "disease") if options[k]}
    if traits:
        spec["trait"] = traits
    for key in ("type", "name", "pcaJob", "minMac", "assembly"):
        if options[key] is not None:
            spec[key] = options[key]
    if options["covariates"]:
        spec["covariates"] = options["covariates"]
    if options["datasets"]:
        spec["datasets"] = options["datasets"]
    if options["components"] is not None:
        spec["pca"] = {**spec.get("pca", {}), "components": options["components"]}
    if options["scoringFile"] is not None:
        try:
            scoring = options["scoringFile"].read_text()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the scoring file: {exc}")
        spec["prs"] = {**spec.get("prs", {}), "scoringFile": scoring}
    if "type" not in spec:
        fail("no job type", "give --type (freq, gwas-linear, gwas-logistic, pca, prs) or a "
             "spec file")
    return spec


@app.command("submit")
def submit(
    spec_file: Path | None = typer.Argument(None, help="A job spec (JSON; - for stdin), e.g. "
                                            '{"type": "gwas-linear", "trait": {"measurement": '
                                            '"LOINC:2089-1"}, "covariates": ["sex", "age"]}. '
                                            "The options below fill in or override it."),
    job_type: str | None = typer.Option(None, "--type", help="freq, gwas-linear, "
                                        "gwas-logistic, pca or prs."),
    name: str | None = typer.Option(None, "--name", help="Names the result files (a GWAS's "
                                    "become gwas-NAME.tsv, ...; default: from the trait)."),
    measurement: str | None = typer.Option(None, "--measurement", help="Quantitative trait: a "
                                           "measurement's assay code, e.g. LOINC:2089-1 (LDL)."),
    hpo: str | None = typer.Option(None, "--hpo", help="Binary trait: an HPO term, descendants "
                                   "included (cases carry it; everyone else is a control)."),
    disease: str | None = typer.Option(None, "--disease", help="Binary trait: a disease term."),
    covariates: list[str] = typer.Option([], "--covariate", help="sex, age, a measurement code "
                                         "or pc1..pcN (with --pca-job); repeat for more."),
    pca_job: str | None = typer.Option(None, "--pca-job", help="The pca job whose scores the "
                                       "nodes use for pc covariates."),
    sex: str | None = typer.Option(None, "--sex", help="Cohort: female or male only."),
    min_age: float | None = typer.Option(None, "--min-age", help="Cohort: at least this age."),
    max_age: float | None = typer.Option(None, "--max-age", help="Cohort: at most this age."),
    cohort_hpo: list[str] = typer.Option([], "--cohort-hpo", help="Cohort: carriers of this "
                                         "HPO term only (descendants included); repeatable."),
    datasets: list[str] = typer.Option([], "--dataset", help="Only these dataset ids (default: "
                                       "every dataset you hold a grant for); repeatable."),
    components: int | None = typer.Option(None, "--components", help="PCA: how many."),
    scoring_file: Path | None = typer.Option(None, "--scoring-file", help="PRS: a PGS Catalog "
                                             "scoring file."),
    min_mac: int | None = typer.Option(None, "--min-mac", help="Release results only for "
                                       "variants with at least this pooled minor allele count "
                                       "(nodes may require more)."),
    assembly: str | None = typer.Option(None, "--assembly", help="GRCh38 (default) or GRCh37; "
                                        "nodes holding the other assembly refuse."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job with progress bars "
                              "until it ends (default), or print its id and return."),
    out: Path | None = typer.Option(None, "--out", help="With --wait: download the result "
                                    "files here when the job is done."),
    hub: str = _hub_option(),
    token_file: Path = _token_option(),
    as_json: bool = json_option("the job", "The job's status object (as `status --json`)."),
) -> None:
    """Submit a federated analysis to the coordinator.

    Each node decides for itself whether you may analyse its datasets (a ControlledAccessGrants
    visa for each), selects its own individuals by the cohort filters, and contributes only
    masked sums; the coordinator learns the pooled statistics, never one node's. A node that
    cannot take part is named with its reason; at least two must.
    """
    spec = _spec(spec_file, {
        "type": job_type, "name": name, "measurement": measurement, "hpo": hpo, "disease": disease,
        "covariates": covariates, "pcaJob": pca_job, "sex": sex, "minAge": min_age,
        "maxAge": max_age, "cohortHpo": cohort_hpo, "datasets": datasets,
        "components": components, "scoringFile": scoring_file, "minMac": min_mac,
        "assembly": assembly})
    from pydantic import ValidationError

    from genofed.analysis.spec import JobSpec

    with _client(hub, token_file) as client:
        try:
            JobSpec.model_validate(spec)  # its messages say what a job of the type needs
            submitted = client.submit(spec)
        except ValidationError as exc:
            fail("the job spec is not valid: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}"
                for e in exc.errors()))
        job_id = submitted["id"]
        if not wait:
            if as_json:
                print_json(client.status(job_id))
            else:
                console.print(job_id if not console.is_terminal else
                              f"Submitted job [bold]{job_id}[/]; follow it with `genofed "
                              f"analysis status {job_id}`.")
            return
        if not as_json:
            errors.print(f"Job {job_id} submitted to {client.url}")
        job = _follow(client, job_id, quiet=as_json)
        if as_json:
            print_json(job)
        else:
            _show(job)
        if job["state"] != "done":
            raise typer.Exit(1)
        if out is not None:
            written = client.download(job_id, out)
            if not as_json:
                console.print(f"{len(written)} result file(s) in {out}/")


def _follow(client: HubClient, job_id: str, *, quiet: bool) -> dict[str, Any]:
    """Poll the job, drawing an overall bar and one per node (on stderr)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet or not errors.is_terminal:
        return client.wait(job_id)
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                  console=errors) as progress:
        overall = progress.add_task("statistics steps", total=None, note="")
        nodes: dict[str, Any] = {}

        def update(job: dict[str, Any]) -> None:
            state = job.get("progress", {})
            steps = state.get("steps")
            progress.update(overall, total=steps, completed=state.get("step", 0),
                            note=f"{job['state']}: {state.get('stage', '')}")
            for node_id, node in sorted(state.get("nodes", {}).items()):
                if node_id not in nodes:
                    nodes[node_id] = progress.add_task(f"  {node_id}", total=steps, note="")
                note = node.get("status", "")
                if node.get("message"):
                    note += f" ({node['message'][:60]})"
                progress.update(nodes[node_id], total=steps, completed=node.get("rounds", 0),
                                note=note)

        return client.wait(job_id, on_update=update)


def _show(job: dict[str, Any]) -> None:
    colour = {"done": "green", "failed": "red"}.get(job["state"], "yellow")
    console.print(f"Job [bold]{job['id']}[/] ({job['type']}): [{colour}]{job['state']}[/]"
                  + (f" — {job['message']}" if job.get("message") else ""))
    nodes = job.get("progress", {}).get("nodes", {})
    if nodes:
        print_table((Column("node", identifier=True), Column("country"), Column("status"),
                     Column("individuals", "right"), Column("datasets"),
                     Column("variants lacked", "right"), Column("rounds", "right"),
                     Column("message")),
                    [(node_id, str(n.get("country", "")), str(n.get("status", "")),
                      str(n.get("individuals", "")), ", ".join(n.get("datasets", [])),
                      str(n.get("variantsLacked", "")), str(n.get("rounds", "")),
                      str(n.get("message", ""))) for node_id, n in sorted(nodes.items())],
                    title="Nodes")
    if job.get("files"):
        console.print("Result files: " + ", ".join(job["files"]) +
                      f"\n  fetch them with `genofed analysis result {job['id']} --out DIR`")


@app.command("status")
def status(
    job_id: str = typer.Argument(..., help="The job's id (from submit or list)."),
    hub: str = _hub_option(),
    token_file: Path = _token_option(),
    as_json: bool = json_option("the job", "An object with id, type, state, message, progress "
                                "(stage, step, steps, attempt, variants, nodes), participants, "
                                "files, spec, created, updated."),
) -> None:
    """A job's state, every node's part in it, and its result files once done."""
    with _client(hub, token_file) as client:
        job = client.status(job_id)
    if as_json:
        print_json(job)
    else:
        _show(job)


@app.command("list")
def list_(
    hub: str = _hub_option(),
    token_file: Path = _token_option(),
    as_json: bool = json_option("your jobs", "An array of status objects, newest first."),
) -> None:
    """Your jobs on this coordinator, newest first."""
    with _client(hub, token_file) as client:
        jobs = client.jobs()
    if as_json:
        print_json(jobs)
        return
    print_table((Column("job", identifier=True), Column("type"), Column("state"),
                 Column("nodes"), Column("submitted"), Column("message")),
                [(j["id"], j["type"], j["state"], ", ".join(j["participants"]), j["created"],
                  j["message"]) for j in jobs], title="Analyses")


@app.command("result")
def result(
    job_id: str = typer.Argument(..., help="The job's id."),
    out: Path = typer.Option(..., "--out", help="Directory for the result files (created)."),
    hub: str = _hub_option(),
    token_file: Path = _token_option(),
) -> None:
    """Download a finished job's result files: GWAS-SSF tables with their -meta.yaml, Manhattan
    and QQ plots, PCA eigenvalues and loadings, frequency tables, score distributions."""
    with _client(hub, token_file) as client:
        written = client.download(job_id, out)
    print_table((Column("file", identifier=True), Column("size", "right")),
                [(str(path), str(path.stat().st_size)) for path in written],
                title=f"Job {job_id}")
