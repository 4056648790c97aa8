"""The inspector: a page for a person to see a project's users and their memory, served by the API
at ``/inspector`` from the files beside this module (hand-written HTML, JS and CSS: nothing to
build, nothing fetched from elsewhere).

The files themselves are open (they hold no data); the page asks for a project token, keeps it in
the tab's ``sessionStorage`` and calls the v1 API with it like any client, so it sees what that
token may see and nothing else. Not part of the OpenAPI document: it is not the API.
"""

from importlib.resources import files

from aiohttp import web

PATH = "/inspector"
FILES = {"index.html": "text/html", "inspector.js": "text/javascript", "inspector.css": "text/css"}
# The page loads only its own files and talks only to its own origin; nothing may frame it.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_page(path: str) -> bool:
    """Whether ``path`` (a route's canonical path) is one of the inspector's, which are open."""
    return path == PATH or path.startswith(PATH + "/")


def add_routes(app: web.Application) -> None:
    """Serve the page at ``/inspector/`` (``/inspector`` redirects there, so the page's relative
    links resolve) and its files beside it. The files are read once, here."""
    folder = files(__package__)
    bodies = {name: folder.joinpath(name).read_bytes() for name in FILES}

    def answer(name: str) -> web.Response:
        return web.Response(body=bodies[name], content_type=FILES[name], charset="utf-8", headers=HEADERS)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(PATH + "/")

    async def page(request: web.Request) -> web.Response:
        return answer("index.html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in FILES:
            raise web.HTTPNotFound(reason=f"the inspector has no file {name!r}")
        return answer(name)

    app.router.add_get(PATH, redirect)
    app.router.add_get(PATH + "/", page)
    app.router.add_get(PATH + "/{name}", asset)
