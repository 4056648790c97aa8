"""Read model: each project's profile config, as the YAML text it was posted with."""

from typing import Any

from projections.store import Store


async def get_config(store: Store, project_id: str) -> dict[str, Any] | None:
    """The latest config of ``project_id`` (``config_yaml``, ``updated_at``, ``version``), or None if never set."""
    rows = await store.query(
        f"SELECT config_yaml, updated_at, version FROM {store.database}.project_configs FINAL "
        "WHERE project_id = {p:String}",
        {"p": project_id},
    )
    return rows[0] if rows else None
