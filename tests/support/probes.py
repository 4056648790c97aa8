"""Probing the API with raw requests and judging the answers against the error convention
(``tests/integration/test_bad_input_corpus.py``)."""

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from yarl import URL

from projections.store import Store
from tests.support.client import Api, eventually

# What an answer must never show: a traceback, a Python exception name, a source path.
LEAK = re.compile(r"Traceback|File \"|\b\w*(Error|Exception)\b(?!:)|site-packages|\.py\b")


async def send(
    api: Api, method: str, path: str, query: str = "", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Status, content type and text of one request; ``path`` (from the document: it starts with /api/v1)
    and ``query`` go out as given, already encoded."""
    url = URL(api.base.removesuffix("/api/v1") + path + (f"?{query}" if query else ""), encoded=True)
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json", **(headers or {})}
    async with api.session.request(method, url, data=body, headers=headers) as response:
        return response.status, response.content_type, await response.text()


def envelope_problems(status: int, content_type: str, text: str) -> list[str]:
    """What is wrong with an answer that must be the envelope."""
    problems = []
    if status >= 500:
        problems.append(f"HTTP {status}")
    if LEAK.search(text):
        problems.append("leaks internals")
    try:
        body = json.loads(text)
    except ValueError:
        return problems + ["not JSON"]
    if content_type != "application/json" or not isinstance(body, dict) or not {"data", "errno", "errmsg"} <= set(body):
        return problems + ["not the envelope"]
    if set(body) - {"data", "errno", "errmsg", "task_id"}:
        problems.append("unexpected keys")
    if status != 200 and (body["errno"], body["data"]) != (status, None):
        problems.append("error without errno = status and data null")
    return problems


class Corpus:
    """Runs probes and collects every failure, so one run reports them all."""

    def __init__(self, api: Api, store: Store, log_size: Callable[[], Awaitable[int]]) -> None:
        self.api, self.store, self.log_size = api, store, log_size
        self.failures: list[str] = []
        self.count = 0

    async def rejected(
        self,
        method: str,
        path: str,
        user: str,
        *,
        status: int,
        field: str,
        query: str = "",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        what: str = "",
    ) -> None:
        """The probe is answered ``status`` with an errmsg starting with ``field``, and nothing is written."""
        before, rows = await self.log_size(), await self.rows_of(user)
        got, content_type, text = await send(self.api, method, path, query, body, headers)
        label = f"{method} {path}?{query[:60]} [{what}]"
        problems = envelope_problems(got, content_type, text)
        if not problems:
            errmsg = json.loads(text)["errmsg"]
            if got != status or not errmsg.startswith(field):
                problems.append(f"expected {status} naming {field!r}")
        if await self.log_size() != before:
            problems.append("the log grew")
        if await self.rows_of(user) != rows:
            problems.append("the user's rows in ClickHouse changed")
        self.record(label, problems, got, text)

    async def answered(
        self, method: str, path: str, *, query: str = "", body: bytes | None = None, what: str = ""
    ) -> tuple[int, dict[str, Any] | None]:
        """The probe gets the envelope; returns its status and body for further checks."""
        got, content_type, text = await send(self.api, method, path, query, body)
        problems = envelope_problems(got, content_type, text)
        self.record(f"{method} {path}?{query[:60]} [{what}]", problems, got, text)
        return got, None if problems else json.loads(text)

    def record(self, label: str, problems: list[str], status: int, text: str) -> None:
        self.count += 1
        if problems:
            self.failures.append(f"{label}: {', '.join(problems)} -> {status} {text[:200]}")

    async def rows_of(self, user: str) -> int:
        """The user's rows in users, blobs, profiles and events."""
        counts = " + ".join(
            f"(SELECT count() FROM {self.store.database}.{table} WHERE user_id = {{u:String}})"
            for table in ("users", "blobs", "profiles", "events")
        )
        return (await self.store.query(f"SELECT {counts} AS n", {"u": user}))[0]["n"]

    def check(self, at_least: int) -> None:
        assert not self.failures, f"{len(self.failures)} of {self.count} probes failed:\n" + "\n".join(self.failures)
        assert self.count >= at_least, f"only {self.count} probes ran"


async def readable(api: Api, path: str) -> Any:
    """The data of ``GET path`` once it answers errno 0 (reads lag the log by a projection batch)."""

    async def data() -> Any:
        _, body = await api.call("GET", path)
        return body["data"] if body["errno"] == 0 else None

    return await eventually(data, timeout=10, what=f"GET {path}")
