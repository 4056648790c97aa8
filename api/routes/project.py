"""Project-level endpoints (Memobase ``/api/v1/project``): profile config, users, usage, billing.

Billing answers in Memobase's shape, but Memstream has no token quota: ``token_left`` and
``next_refill_at`` are always null (unlimited, never refilled) and ``project_token_cost_month``
is what the project's LLM calls spent this UTC month, from the ``usage`` read model.
"""

from datetime import timedelta

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from api import params
from api.deps import deps, project_of, until_visible
from api.envelope import ApiError, invalid, ok
from projections.configs import get_config
from projections.rows import version_of
from projections.usage import daily_usage, tokens_since
from projections.users import USER_ORDERS, list_users
from streams.events import ProjectConfigSet, utc_now
from streams.project_config import ConfigError, parse

routes = web.RouteTableDef()


class ProfileConfigBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    profile_config: str | None  # null resets to the default config, like an empty text


@routes.get("/api/v1/project/profile_config")
async def read_profile_config(request: web.Request) -> web.Response:
    config = await get_config(deps(request).store, project_of(request))
    return ok({"profile_config": config["config_yaml"] if config else ""})


@routes.post("/api/v1/project/profile_config")
async def update_profile_config(request: web.Request) -> web.Response:
    """Validate the YAML, log it, and answer once the read model shows it (bounded wait)."""
    d, project = deps(request), project_of(request)
    text = (await params.body(request, ProfileConfigBody)).profile_config or ""
    try:
        parse(text)
    except ConfigError as exc:
        raise ApiError(400, f"profile_config: {exc}") from None
    record = ProjectConfigSet(project_id=project, config_yaml=text)
    await d.producer.send(d.settings.topic_projects, record)
    version = version_of(record.occurred_at)

    async def visible() -> bool:
        config = await get_config(d.store, project)
        return config is not None and config["version"] >= version

    await until_visible(visible, d.settings.read_your_writes_timeout)
    return ok()


@routes.get("/api/v1/project/users")
async def project_users(request: web.Request) -> web.Response:
    d = deps(request)
    order_by = request.query.get("order_by") or "updated_at"
    if order_by not in USER_ORDERS:
        raise invalid(f"order_by: '{order_by}' is not one of {', '.join(USER_ORDERS)}")
    users, count = await list_users(
        d.store,
        project_of(request),
        search=request.query.get("search", ""),
        order_by=order_by,
        descending=params.flag(request, "order_desc", True),
        limit=params.integer(request, "limit", 10, low=1, high=1000),
        offset=params.integer(request, "offset", 0, high=10**9),
    )
    return ok({"users": users, "count": count})


@routes.get("/api/v1/project/usage")
async def project_usage(request: web.Request) -> web.Response:
    """Memobase's ``DailyUsage`` list, oldest day first, today (UTC) last."""
    last_days = params.integer(request, "last_days", 7, low=1, high=3660)
    today = utc_now().date()
    days = await daily_usage(deps(request).store, project_of(request), today - timedelta(days=last_days - 1), today)
    return ok(days)


@routes.get("/api/v1/project/billing")
async def project_billing(request: web.Request) -> web.Response:
    month_start = utc_now().date().replace(day=1)
    spent = await tokens_since(deps(request).store, project_of(request), month_start)
    return ok({"token_left": None, "next_refill_at": None, "project_token_cost_month": spent})
