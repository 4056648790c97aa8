"""``GET /metrics`` on the API (root token only) and the middleware that counts every request by
its route's canonical path (``/api/v1/users/profile/{user_id}``, never the raw URL) and status.

Not one of the declared routes (``api.app.ROUTE_MODULES``): it answers Prometheus's text format,
not an envelope, so it stays out of the OpenAPI document, beside the Memobase and MemOS APIs.
"""

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.auth import ROOT
from api.deps import deps
from api.envelope import MEMOS_PREFIX, ApiError
from memstream import metrics as process_metrics
from memstream.metrics import Metrics

METRICS_PATH = "/metrics"
INSERTS = frozenset({"/api/v1/blobs/insert/{user_id}", f"{MEMOS_PREFIX}add/message"})
MEMOS_READS = frozenset({f"{MEMOS_PREFIX}search/memory", f"{MEMOS_PREFIX}get/memory"})
NOT_READS = frozenset({"/api/v1/healthcheck", "/api/v1/openapi.json", "/api/v1/status", METRICS_PATH})


def kind_of(method: str, route: str) -> str | None:
    """Which latency histogram a request of ``route`` goes to, if any."""
    if method == "POST" and route in INSERTS:
        return "insert"
    if (method == "GET" and route.startswith("/api/") and route not in NOT_READS) or route in MEMOS_READS:
        return "read"
    return None


def metrics_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started, status = time.perf_counter(), 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.request(
                request.method, route, status, time.perf_counter() - started, kind_of(request.method, route)
            )

    return middleware


async def metrics_endpoint(request: web.Request) -> web.Response:
    if not request[ROOT]:
        raise ApiError(401, "GET /metrics needs the root token", http_status=401)
    return await process_metrics.response(deps(request).metrics)
