"""The node's HTTP server (ASGI): the Beacon today; htsget, access, catalogue and analysis
APIs mount beside it."""
