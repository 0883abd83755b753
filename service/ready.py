"""The one line a person starting the service looks for: where the page and the API reference are."""

from __future__ import annotations

import os

import psutil


def listening_address() -> tuple[str, int] | None:
    """(host, port) of the TCP socket this worker serves on (BentoML hands every worker the bound
    socket, whichever of ``--port``, ``BENTOML_PORT`` or the configuration chose it); None if unknown."""
    try:
        sockets = [c for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    except (psutil.Error, OSError):
        return None
    if not sockets:
        return None
    address = min(sockets, key=lambda c: c.fd).laddr
    return address.ip, address.port


def ready_line() -> str:
    """``ready: the page http://localhost:3000/ , the API reference http://localhost:3000/docs``."""
    host, port = listening_address() or (os.environ.get("BENTOML_HOST", "localhost"),
                                         int(os.environ.get("BENTOML_PORT", "3000")))
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{port}"
    return f"ready: the page {base}/ , the API reference {base}/docs"
