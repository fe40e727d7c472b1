"""What keeps other web sites out of a page that listens on this machine.

A page open in the same browser can send requests to ``127.0.0.1`` too. Two rules stop it:
every POST (the requests that change something: uploads, training, renaming, deleting) must
carry the header :data:`HEADER`, which a browser lets another site add only after a CORS
preflight this server never approves; and the ``Host`` header must name this machine, so a
site whose DNS name is rebound to 127.0.0.1 cannot read the answers either.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

HEADER = "x-styler"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def host_name(host_header: str) -> str:
    """``[::1]:7860`` -> ``::1``; ``localhost:7860`` -> ``localhost``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware: refuses, with 403 and one line, what the rules above forbid. ``host``: the
    address served; a wildcard (0.0.0.0) accepts any Host, as the user chose to be reachable."""

    def __init__(self, app: Any, host: str) -> None:
        self.app = app
        self.hosts = None if host in WILDCARDS else LOCAL_NAMES | {host}

    def problem(self, method: str, headers: Headers) -> str | None:
        if self.hosts is not None and host_name(headers.get("host", "")) not in self.hosts:
            return f"this page answers only to {', '.join(sorted(self.hosts))} (Host {headers.get('host', '')[:80]!r})"
        if method == "POST" and headers.get(HEADER) != "1":
            return f"a change needs the {HEADER} header that styler's page sends"
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            problem = self.problem(scope["method"], Headers(scope=scope))
            if problem is not None:
                await JSONResponse({"error": problem}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
