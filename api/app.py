"""The aiohttp application: middlewares (envelope, auth), the route tables and the OpenAPI document."""

from aiohttp import web

from api import inspector, openapi
from api.auth import auth_middleware
from api.deps import DEPS, Deps
from api.envelope import envelope_middleware
from api.metrics import METRICS_PATH, metrics_endpoint, metrics_middleware
from api.routes import (
    blobs,
    buffer,
    context,
    events,
    health,
    imports,
    memos,
    profiles,
    project,
    status,
    tasks,
    users,
)
from streams.projects import ProjectDirectory

ROUTE_MODULES = (
    health,
    openapi,
    status,
    users,
    blobs,
    buffer,
    imports,
    profiles,
    events,
    context,
    project,
    tasks,
    memos,
)


def create_app(deps: Deps, directory: ProjectDirectory) -> web.Application:
    settings = deps.settings
    if not settings.root_token:
        raise ValueError("MEMSTREAM_ROOT_TOKEN must be set for the API")
    app = web.Application(
        middlewares=[
            metrics_middleware(deps.metrics),
            envelope_middleware,
            auth_middleware(settings.root_token, settings.default_project, directory),
        ],
        client_max_size=settings.max_body_bytes,
        # The request line carries the query (the Memobase SDK puts chats in ``chats_str``): allow it
        # what a body is allowed, past aiohttp's 8 KiB default, whose overflow it answers in plain text.
        handler_args={"max_line_size": max(settings.max_body_bytes, 8190), "max_field_size": 8190},
    )
    app[DEPS] = deps
    for module in ROUTE_MODULES:
        app.add_routes(module.routes)
    app[openapi.DOCUMENT] = openapi.build_document(app)
    app.router.add_get(METRICS_PATH, metrics_endpoint)  # after the document: Prometheus text, not the API
    inspector.add_routes(app)  # a page, not the API
    return app
