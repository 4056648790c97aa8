"""The pipeline's state (root token only): each consumer group's lag per partition, the dead
letters by reason, and this process's health."""

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from api.deps import deps
from api.endpoint import endpoint
from api.envelope import ok
from projections.dead_letters import dead_letters_by_reason
from streams.runtime.lag import lags

routes = web.RouteTableDef()


class Lag(BaseModel):
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


class ReasonCount(BaseModel):
    reason: str
    kind: str
    count: int
    last_at: datetime


class Status(BaseModel):
    healthy: bool
    problems: list[str]
    groups: dict[str, list[Lag]]
    dead_letters: list[ReasonCount]


@routes.get("/api/v1/status")
@endpoint(
    "Lag per consumer group and partition, dead letters by reason, health (root token)", data=Status, root_only=True
)
async def pipeline_status(request: web.Request) -> web.Response:
    d = deps(request)
    problems = d.health()
    groups = {group: [vars(row) for row in rows] for group, rows in (await lags(d.settings)).items()}
    return ok(
        {
            "healthy": not problems,
            "problems": problems,
            "groups": groups,
            "dead_letters": await dead_letters_by_reason(d.store),
        }
    )
