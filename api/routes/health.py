from aiohttp import web

from api.envelope import ok

routes = web.RouteTableDef()


@routes.get("/api/v1/healthcheck")
async def healthcheck(request: web.Request) -> web.Response:
    return ok()
