"""Serving the page with uvicorn on a socket bound first, so a taken port is one clear error and
port 0 picks a free one; :func:`background` runs it on a thread (tests, notebooks)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from typing import Any, Iterator

from styler.errors import ConfigError


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another port") from exc
    return sock


def url_of(host: str, sock: socket.socket) -> str:
    """The address to open: a wildcard host is reached on this machine through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{sock.getsockname()[1]}/"


def _server(app: Any, log_level: str) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))


def serve(app: Any, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve until Ctrl-C; the app's shutdown stops a running training job, which keeps its best generator."""
    _server(app, log_level).run(sockets=[sock])


@contextlib.contextmanager
def background(app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` on a thread while the block runs; yields the page's address."""
    sock = listen(host, port)
    server = _server(app, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="styler-ui-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        if not server.started:
            raise ConfigError("the page's server did not start (see the log above)")
        yield url_of(host, sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
