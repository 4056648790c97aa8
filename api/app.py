"""The aiohttp application: middlewares (envelope, auth) and the route tables."""

from aiohttp import web

from api.auth import auth_middleware
from api.deps import DEPS, Deps
from api.envelope import envelope_middleware
from api.routes import blobs, buffer, context, events, health, imports, profiles, project, tasks, users
from streams.projects import ProjectDirectory


def create_app(deps: Deps, directory: ProjectDirectory) -> web.Application:
    settings = deps.settings
    if not settings.root_token:
        raise ValueError("MEMSTREAM_ROOT_TOKEN must be set for the API")
    app = web.Application(
        middlewares=[envelope_middleware, auth_middleware(settings.root_token, settings.default_project, directory)],
        client_max_size=settings.max_body_bytes,
    )
    app[DEPS] = deps
    for module in (health, users, blobs, buffer, imports, profiles, events, context, project, tasks):
        app.add_routes(module.routes)
    return app
