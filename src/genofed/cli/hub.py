"""`genofed hub serve NETWORK_FILE --node NODE_DIR`: run the network's coordinator."""

from __future__ import annotations

from pathlib import Path

import typer

from genofed.cli.output import console, fail

app = typer.Typer(help="Run the coordinator that answers for the whole network (Beacon "
                  "network under /network/beacon) and runs federated analyses "
                  "(/analysis/jobs).", no_args_is_help=True)


@app.command("serve")
def serve(
    network_file: Path = typer.Argument(..., help="The network file (`genofed network init`)."),
    node: Path = typer.Option(..., "--node", help="The member node this hub runs beside: it "
                              "signs requests to the other members with that node's key."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8090, "--port", help="Port to listen on."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds each member has to "
                                  "answer before it is reported as timed out."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: critical, "
                                  "error, warning, info, debug."),
) -> None:
    """Fan each researcher request out to every member concurrently (forwarding their token, so
    each node decides access for itself) and merge the answers, with every node's status."""
    import uvicorn

    from genofed.config.node import load_config
    from genofed.federation.hub import PREFIX
    from genofed.server.hub import create_hub_app

    try:
        config = load_config(node)
        app = create_hub_app(network_file, node, timeout=timeout)
    except OSError as exc:
        fail(str(exc))
    console.print(f"Beacon network at http://{host}:{port}{PREFIX}, federated analyses at "
                  f"http://{host}:{port}/analysis/jobs (signing as {config.node_id}, "
                  f"{timeout:g} s per member); the portal at http://{host}:{port}/portal/")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
