"""The playground acts only for its own page: actions from other pages, and bodies that are
not JSON, are refused.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

# Methods that change nothing; every other one must come from the page itself.
READING = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of requests the page makes, or the person makes by hand. "same-site"
# is not one: another port on this machine is the same site, but not the playground.
OWN_FETCHES = frozenset({"same-origin", "none"})


@web.middleware
async def same_origin_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse actions that another page in the browser sends, and bodies that are not JSON.

    Every action reaches the bot as a signed request from the person chosen, so a page on
    any other origin that posts here could act as them. Browsers name the page a request
    comes from (Origin, Sec-Fetch-Site); a request naming neither is a tool's (curl, tests).
    """
    if request.method in READING:
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin not in _own_origins(request):
            return _error(f"Requests from {origin} are refused.", status=403)
    elif request.headers.get("Sec-Fetch-Site", "none") not in OWN_FETCHES:
        return _error("Requests from other sites are refused.", status=403)
    # A form on another site can post text/plain or form data without the browser asking
    # first; application/json from elsewhere needs a preflight this server never grants.
    if request.content_type != "application/json":
        return _error("The body must be JSON (Content-Type: application/json).", status=415)
    return await handler(request)


def _own_origins(request: web.Request) -> set[str]:
    """The origins of this server's page: 127.0.0.1 or localhost on the port it serves."""
    # The port of the socket, not of the Host header: a DNS name rebound to 127.0.0.1 keeps
    # its own name in Host and Origin alike, and must not pass for the playground.
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return set()
    port = sockname[1]
    return {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}


def _error(text: str, *, status: int) -> web.Response:
    return web.json_response({"ok": False, "error": text}, status=status)
