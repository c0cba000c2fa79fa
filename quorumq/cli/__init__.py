"""The ``quorumq`` command line: parses, calls, prints; no logic of its own."""

from quorumq.cli._app import app, main

__all__ = ["app", "main"]
