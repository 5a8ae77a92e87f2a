"""`genofed serve NODE_DIR`: serve the node over HTTP (Beacon under /beacon)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    node_dir: Path = typer.Argument(..., help="The node directory (`genofed node init`)."),
    host: str = typer.Option(None, "--host", help="Address to listen on (default: node config, "
                             "127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port (default: node config, 8080)."),
) -> None:
    """Serve the node's Beacon v2 API (and /openapi.json) over HTTP."""
    import uvicorn

    from genofed.config.node import NodeConfigError, load_config
    from genofed.server.app import create_app

    try:
        config = load_config(node_dir)
    except NodeConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    app = create_app(node_dir)
    uvicorn.run(app, host=host or config.server.host, port=port or config.server.port,
                log_level="info")
