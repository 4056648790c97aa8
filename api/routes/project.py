"""Project-level endpoints (Memobase ``/api/v1/project``): profile config, users, usage, billing.

Billing answers in Memobase's shape, but Memstream has no token quota: ``token_left`` and
``next_refill_at`` are always null (unlimited, never refilled) and ``project_token_cost_month``
is what the project's LLM calls spent this UTC month, from the ``usage`` read model.
"""

from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.deps import deps, project_of, settled
from api.endpoint import endpoint
from api.envelope import ApiError, ok
from projections.configs import get_config
from projections.usage import daily_usage, tokens_since
from projections.users import USER_ORDERS, list_users
from streams.project_config import ConfigError, parse
from streams.records import ProjectConfigSet, utc_now

routes = web.RouteTableDef()


class ProfileConfigBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    profile_config: str | None  # null resets to the default config, like an empty text


class ProfileConfig(BaseModel):
    profile_config: str


class UsersQuery(BaseModel):
    search: str = Field("", description="only users whose id or data contains this text (case-insensitive)")
    order_by: Literal[USER_ORDERS] = "updated_at"  # type: ignore[valid-type]  # Literal of the tuple's values
    order_desc: bool = True
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10**9)


class ProjectUser(BaseModel):
    id: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    profile_count: int
    event_count: int


class UserPage(BaseModel):
    users: list[ProjectUser]
    count: int


class UsageQuery(BaseModel):
    last_days: int = Field(7, ge=1, le=3660)


class DailyUsage(BaseModel):
    date: str
    total_insert: int
    total_success_insert: int
    total_input_token: int
    total_output_token: int
    total_llm_calls: int


class Billing(BaseModel):
    token_left: None
    next_refill_at: None
    project_token_cost_month: int


@routes.get("/api/v1/project/profile_config")
@endpoint("The project's profile config (YAML)", data=ProfileConfig)
async def read_profile_config(request: web.Request) -> web.Response:
    d = deps(request)
    await d.consistency.settled_topic(d.settings.topic_projects)
    config = await get_config(d.store, project_of(request))
    return ok({"profile_config": config["config_yaml"] if config else ""})


@routes.post("/api/v1/project/profile_config")
@endpoint("Set the project's profile config (errno 400 naming a bad line or key)", body=ProfileConfigBody)
async def update_profile_config(request: web.Request, body: ProfileConfigBody) -> web.Response:
    """Validate the YAML, log it, and answer once the read model shows it (bounded wait)."""
    d, project = deps(request), project_of(request)
    text = body.profile_config or ""
    try:
        parse(text)
    except ConfigError as exc:
        raise ApiError(400, f"profile_config: {exc}") from None
    record = ProjectConfigSet(project_id=project, config_yaml=text)
    landed = await d.producer.send(d.settings.topic_projects, record)
    await d.consistency.until_topic(d.settings.topic_projects, landed.partition, landed.offset, "the profile config")
    return ok()


@routes.get("/api/v1/project/users")
@endpoint("A page of the project's users, with their profile and event counts", query=UsersQuery, data=UserPage)
async def project_users(request: web.Request, query: UsersQuery) -> web.Response:
    users, count = await list_users(
        (await settled(request)).store,
        project_of(request),
        search=query.search,
        order_by=query.order_by,
        descending=query.order_desc,
        limit=query.limit,
        offset=query.offset,
    )
    return ok({"users": users, "count": count})


@routes.get("/api/v1/project/usage")
@endpoint("LLM tokens and inserts per UTC day", query=UsageQuery, data=list[DailyUsage])
async def project_usage(request: web.Request, query: UsageQuery) -> web.Response:
    """Memobase's ``DailyUsage`` list, oldest day first, today (UTC) last."""
    today = utc_now().date()
    first = today - timedelta(days=query.last_days - 1)
    days = await daily_usage((await settled(request)).store, project_of(request), first, today)
    return ok(days)


@routes.get("/api/v1/project/billing")
@endpoint("Tokens spent this UTC month (no quota: token_left and next_refill_at are null)", data=Billing)
async def project_billing(request: web.Request) -> web.Response:
    month_start = utc_now().date().replace(day=1)
    spent = await tokens_since((await settled(request)).store, project_of(request), month_start)
    return ok({"token_left": None, "next_refill_at": None, "project_token_cost_month": spent})
