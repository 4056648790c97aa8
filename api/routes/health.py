from aiohttp import web

from api.endpoint import endpoint
from api.envelope import ok

routes = web.RouteTableDef()


@routes.get("/api/v1/healthcheck")
@endpoint("Liveness (no token needed)")
async def healthcheck(request: web.Request) -> web.Response:
    return ok()
