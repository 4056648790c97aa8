"""Project-level endpoints (Memobase ``/api/v1/project``): profile config, users, usage, billing."""

from aiohttp import web

routes = web.RouteTableDef()
