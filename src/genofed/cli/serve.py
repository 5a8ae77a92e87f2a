"""`genofed serve NODE_DIR`: serve the node over HTTP (Beacon under /beacon, the node's portal
pages under /portal)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from genofed.cli.output import console


def serve(
    node_dir: Path = typer.Argument(..., help="The node directory (`genofed node init`)."),
    host: str = typer.Option(None, "--host", help="Address to listen on (default: node config, "
                             "127.0.0.1)."),
    port: int = typer.Option(None, "--port", min=0, max=65535,
                             help="Port (default: node config, 8080; 0: any free port, "
                                  "announced on start)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes sharing the port "
                                "(one per core serves the most queries per second)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: critical, "
                                  "error, warning, info, debug."),
) -> None:
    """Serve the node's HTTP APIs (Beacon v2 under /beacon, /openapi.json) until Ctrl-C."""
    import uvicorn

    from genofed.config.node import load_config
    from genofed.server.app import NODE_DIR_VARIABLE, create_app

    config = load_config(node_dir)
    app = create_app(node_dir)  # fail here, with a clear message, rather than in a worker
    bind = {"host": host or config.server.host,
            "port": config.server.port if port is None else port,
            "log_level": log_level}
    if bind["port"]:  # port 0: uvicorn prints the port it got
        base = f"http://{bind['host']}:{bind['port']}"
        console.print(f"Node {config.node_id}: Beacon at {base}/beacon, its portal (committee, "
                      f"datasets, audit) at {base}/portal/")
    if workers == 1:
        uvicorn.run(app, **bind)  # type: ignore[arg-type]
        return
    os.environ[NODE_DIR_VARIABLE] = str(node_dir.resolve())
    uvicorn.run("genofed.server.app:app_from_environment", factory=True, workers=workers,
                **bind)  # type: ignore[arg-type]
