"""Profile import (Memobase ``/api/v1/users/profile/import``): a text becomes a chat blob and a flush."""

from aiohttp import web

routes = web.RouteTableDef()
