"""docs/analytics.md, checked: its table sections match the schema `migrate` creates, and every query
under "Example queries" (the ```sql block exactly as written) runs on a seeded database and returns
the rows the seed implies.

The seed is a set of facts with fixed times, written through the projection's own mapping
(``ops_for`` / ``dead_letter_ops`` + ``apply_ops``) into a fresh database, one fact per insert so
that several versions of a key sit in separate parts, as they do before ClickHouse merges them.
Every expected row is computed here from the seed's description, not typed in."""

import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from projections.rows import Op, dead_letter_ops, ops_for
from projections.schema import migrate, schema_tables
from projections.store import DatabaseView, Store
from projections.writer import apply_ops
from streams.records import (
    BlobDropped,
    BlobStored,
    BlobType,
    BufferClosed,
    EventData,
    EventDropped,
    EventRecorded,
    Fact,
    FlushOutcome,
    ProfileSlotChanged,
    TaskFinished,
    UsageRecorded,
    UserForgotten,
    UserStored,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
DAY1 = datetime(2025, 3, 3, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def at(day: datetime, hh: int, mm: int, ss: float = 0) -> datetime:
    return day + timedelta(hours=hh, minutes=mm, seconds=ss)


# --- the doc ------------------------------------------------------------------------------------


def sections(level: str, text: str) -> dict[str, str]:
    """The doc's sections at ``level`` ('##' or '###'): heading → body."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def doc_queries() -> dict[str, str]:
    examples = sections("##", DOC.read_text())["Example queries"]
    queries = {}
    for heading, body in sections("###", examples).items():
        [sql] = re.findall(r"^```sql\n(.*?)^```", body, flags=re.M | re.S)
        queries[heading] = sql
    return queries


def doc_tables() -> dict[str, dict[str, Any]]:
    tables = {}
    for heading, body in sections("###", sections("##", DOC.read_text())["The tables"]).items():
        [(engine, order_by)] = re.findall(r"^Engine `(.+?)`, ORDER BY `(.+?)`", body, flags=re.M)
        columns = re.findall(r"^\| `(\w+)` \| `(.+?)` \|", body, flags=re.M)
        tables[heading.strip("`")] = {"engine": engine, "order_by": order_by.strip("()"), "columns": columns}
    return tables


# --- the seed -----------------------------------------------------------------------------------

P, Q = "acme", "beta"  # two projects


@dataclass
class Flush:
    project: str
    user: str
    chats: list[datetime]  # each chat blob's insert time
    closed: datetime
    took: timedelta | None  # None: extraction still running
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)  # op, topic, sub_topic, content
    tokens: tuple[int, int] = (0, 0)
    failed: bool = False


USERS = {
    (P, "alice"): at(DAY1, 8, 0),
    (P, "bob"): at(DAY1, 11, 0),
    (P, "carol"): at(DAY2, 14, 0),
    (Q, "dan"): at(DAY1, 19, 0),
    (Q, "erin"): at(DAY1, 21, 0),  # forgotten at the end
}
SECONDS = timedelta(seconds=1)
ALICE_1 = [("add", "interest", "music", "jazz"), ("add", "basic_info", "city", "Paris")]
ALICE_2 = [("update", "interest", "music", "jazz, blues"), ("delete", "basic_info", "city", "")]
DAN = [("add", "interest", "music", "techno"), ("add", "work", "title", "nurse")]
# project, user, chat times, window closed, extraction took, slot changes, tokens (in, out)
FLUSHES = [
    Flush(P, "alice", [at(DAY1, 9, 0), at(DAY1, 9, 1)], at(DAY1, 9, 5), 4 * SECONDS, ALICE_1, (500, 80)),
    Flush(P, "alice", [at(DAY2, 10, 0)], at(DAY2, 10, 10), 6.5 * SECONDS, ALICE_2, (300, 40)),
    Flush(
        P, "bob", [at(DAY1, 12, 0)], at(DAY1, 12, 30), 2 * SECONDS, [("add", "interest", "sport", "tennis")], (200, 30)
    ),
    Flush(P, "bob", [at(DAY2, 8, 0)], at(DAY2, 8, 1), 30 * SECONDS, failed=True),
    Flush(P, "carol", [at(DAY2, 15, 0), at(DAY2, 15, 5)], at(DAY2, 15, 6), None),  # extraction under way
    Flush(Q, "dan", [at(DAY1, 20, 0)], at(DAY1, 20, 1), 3 * SECONDS, DAN, (400, 60)),
    Flush(Q, "erin", [at(DAY1, 21, 30)], at(DAY1, 21, 31), SECONDS, [("add", "interest", "food", "ramen")], (250, 20)),
]
IDLE = [(P, "alice", at(DAY2, 11, 0)), (Q, "dan", at(DAY2, 9, 0)), (Q, "dan", at(DAY2, 9, 2))]  # in an open window
DELETED_BLOB = (P, "carol", at(DAY1, 18, 0), at(DAY1, 18, 3))  # inserted, then deleted before any flush
EDITED_EVENT = (P, "alice", at(DAY2, 12, 0))  # alice's first event gets a new tip
DROPPED_EVENT = (Q, "dan", at(DAY2, 13, 0))  # dan's event is deleted
FORGOTTEN = (Q, "erin", at(DAY2, 7, 0))
# where on the dead-letter topic, key, value, reason, when
DEAD = [
    ("dl:0:0", b"acme:alice", {"kind": "blob_inserted"}, "blob_data over max_blob_bytes", at(DAY1, 10, 0)),
    ("dl:0:1", b"acme:bob", {"kind": "blob_inserted"}, "blob_data over max_blob_bytes", at(DAY2, 10, 0)),
    ("dl:1:0", b"nosuch:zed", {"kind": "user_created"}, "project nosuch does not exist", at(DAY1, 23, 0)),
    ("dl:1:1", None, None, "does not decode", at(DAY2, 1, 0)),
]


class Seed:
    """Builds the facts (each user's seq in order) and remembers the ids it made."""

    def __init__(self) -> None:
        self.ops: list[list[Op]] = []
        self._seq: Counter[tuple[str, str]] = Counter()
        self.slots: dict[tuple[str, str, str, str], str] = {}  # project, user, topic, sub_topic → profile id
        self.events: dict[tuple[str, str], list[tuple[str, datetime]]] = defaultdict(list)  # → (event id, created)

    def fact(self, cls: type[Fact], project: str, user: str, when: datetime, **kw: Any) -> None:
        self._seq[(project, user)] += 1
        record = cls(project_id=project, user_id=user, occurred_at=when, seq=self._seq[(project, user)], **kw)
        self.ops.append(ops_for(record))

    def blob(self, project: str, user: str, when: datetime) -> tuple[str, str]:
        blob_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
        data = {"messages": [{"role": "user", "content": "hi"}]}
        self.fact(
            BlobStored,
            project,
            user,
            when,
            blob_id=blob_id,
            task_id=task_id,
            blob_type=BlobType.chat,
            blob_data=data,
            created_at=when,
        )
        return blob_id, task_id

    def flush(self, f: Flush) -> None:
        stored = [self.blob(f.project, f.user, when) for when in f.chats]
        blob_ids = [b for b, _ in stored]
        task_ids = [t for _, t in stored] + [str(uuid.uuid4())]  # and the flush request's task
        flush_id = str(uuid.uuid4())
        common = {"flush_id": flush_id, "blob_type": BlobType.chat}
        self.fact(
            BufferClosed, f.project, f.user, f.closed, reason="request", task_ids=task_ids, blob_ids=blob_ids, **common
        )
        if f.took is None:
            return
        end = f.closed + f.took
        if f.failed:
            finished = {"status": "failed", "error": "the LLM kept failing"}
            self.fact(TaskFinished, f.project, f.user, end, task_ids=task_ids, blob_ids=blob_ids, **common, **finished)
            return
        for op, topic, sub_topic, content in f.changes:
            key = (f.project, f.user, topic, sub_topic)
            profile_id = self.slots.setdefault(key, str(uuid.uuid4()))
            slot = {"topic": topic, "sub_topic": sub_topic, "content": content}
            self.fact(
                ProfileSlotChanged, f.project, f.user, end, profile_id=profile_id, op=op, source_id=flush_id, **slot
            )
        event_id = str(uuid.uuid4())
        self.events[(f.project, f.user)].append((event_id, end))
        tip = EventData(event_tip=f"flush at {f.closed.isoformat()}")
        self.fact(EventRecorded, f.project, f.user, end, event_id=event_id, flush_id=flush_id, event_data=tip)
        inp, out = f.tokens
        usage = {"source_id": flush_id, "model": "gpt-4o-mini", "calls": 1, "input_tokens": inp, "output_tokens": out}
        self.fact(UsageRecorded, f.project, f.user, end, **usage)
        outcome = FlushOutcome(
            event_id=event_id, added=[self.slots[(f.project, f.user, c[1], c[2])] for c in f.changes]
        )
        self.fact(
            TaskFinished,
            f.project,
            f.user,
            end,
            task_ids=task_ids,
            blob_ids=blob_ids,
            status="completed",
            outcomes=[outcome],
            **common,
        )


def build() -> Seed:
    seed = Seed()
    for (project, user), created in USERS.items():
        seed.fact(UserStored, project, user, created, data={"name": user}, created_at=created)
    for f in FLUSHES:
        seed.flush(f)
    for project, user, when in IDLE:
        seed.blob(project, user, when)
    project, user, inserted, deleted = DELETED_BLOB
    blob_id, task_id = seed.blob(project, user, inserted)
    seed.fact(BlobDropped, project, user, deleted, blob_id=blob_id)
    done = {"flush_id": str(uuid.uuid4()), "blob_type": BlobType.chat, "task_ids": [task_id], "blob_ids": []}
    seed.fact(TaskFinished, project, user, deleted, status="completed", **done)  # as the owner ends a dropped blob
    project, user, when = EDITED_EVENT
    event_id, created = seed.events[(project, user)][0]
    tip = EventData(event_tip="edited")
    seed.fact(
        EventRecorded, project, user, when, event_id=event_id, flush_id="edit", event_data=tip, created_at=created
    )
    project, user, when = DROPPED_EVENT
    [(event_id, _)] = seed.events.pop((project, user))
    seed.fact(EventDropped, project, user, when, event_id=event_id)
    project, user, when = FORGOTTEN
    seed.fact(UserForgotten, project, user, when)
    for where, key, value, reason, when in DEAD:
        body = json.dumps(value).encode() if value is not None else b"\x00not json"
        ops = dead_letter_ops(where, key, body, {"error": reason.encode()}, when, int(where.rsplit(":", 1)[1]))
        seed.ops += [ops, ops]  # written twice, as a writer retry does: FINAL counts it once
    return seed


@pytest.fixture(scope="module")
async def db(store: Store) -> AsyncIterator[DatabaseView]:
    view = DatabaseView(store, f"analytics_{uuid.uuid4().hex[:12]}")
    await migrate(view)
    for ops in build().ops:
        await apply_ops(view, ops)
    yield view
    await store.command(f"DROP DATABASE IF EXISTS {view.database}")


async def run(db: DatabaseView, heading: str) -> list[dict[str, Any]]:
    sql = re.sub(r"\bmemstream\.(?=\w)", f"{db.database}.", doc_queries()[heading])
    return await db.query(sql)


# --- what the seed implies ----------------------------------------------------------------------

FORGOTTEN_USER = FORGOTTEN[:2]


def kept(project: str, user: str) -> bool:
    return (project, user) != FORGOTTEN_USER


def stored_chats() -> list[tuple[str, str, datetime, str]]:
    """Every chat blob still held: project, user, insert time, buffer status."""
    chats = []
    for f in FLUSHES:
        status = "processing" if f.took is None else "failed" if f.failed else "done"
        chats += [(f.project, f.user, when, status) for when in f.chats]
    chats += [(p, u, when, "idle") for p, u, when in IDLE]
    return [c for c in chats if kept(c[0], c[1])]


def current_slots() -> dict[tuple[str, str, str, str], str]:
    slots: dict[tuple[str, str, str, str], str] = {}
    for f in FLUSHES:
        if f.took is None or f.failed or not kept(f.project, f.user):
            continue
        for op, topic, sub_topic, content in f.changes:
            key = (f.project, f.user, topic, sub_topic)
            if op == "delete":
                del slots[key]
            else:
                slots[key] = content
    return slots


def extracted() -> list[Flush]:
    return [f for f in FLUSHES if f.took is not None and not f.failed]


def naive(moment: datetime) -> datetime:
    """As clickhouse-connect reads a ``DateTime64(3, 'UTC')``: the UTC time without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def inclusive_quantile(values: list[float], level: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, ClickHouse's quantileExactInclusive)."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * level
    low = int(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


# --- the checks ---------------------------------------------------------------------------------


def test_the_doc_has_a_check_for_every_query() -> None:
    assert set(doc_queries()) == set(EXPECTED)
    assert len(EXPECTED) >= 8


async def test_the_doc_describes_every_table_as_migrate_creates_it(db: DatabaseView) -> None:
    documented = doc_tables()
    assert set(documented) == set(schema_tables())
    params = {"d": db.database}
    tables = await db.query(
        "SELECT name, engine_full, sorting_key FROM system.tables WHERE database = {d:String}", params
    )
    columns = await db.query(
        "SELECT table, name, type FROM system.columns WHERE database = {d:String} ORDER BY table, position", params
    )
    for table in tables:
        if table["name"] == "schema_migrations":
            continue
        doc = documented[table["name"]]
        assert doc["engine"] == table["engine_full"].split(" ORDER BY ")[0], table["name"]
        assert doc["order_by"] == table["sorting_key"], table["name"]
        assert doc["columns"] == [(c["name"], c["type"]) for c in columns if c["table"] == table["name"]], table["name"]


async def active_users_per_day() -> list[dict[str, Any]]:
    days: dict[tuple[str, date], list[str]] = defaultdict(list)
    for project, user, when, _ in stored_chats():
        days[(project, when.date())].append(user)
    return [
        {"project_id": p, "day": d, "active_users": len(set(users)), "blobs": len(users)}
        for (p, d), users in sorted(days.items())
    ]


async def new_users_per_day() -> list[dict[str, Any]]:
    days = Counter((p, created.date()) for (p, u), created in USERS.items() if kept(p, u))
    return [{"project_id": p, "day": d, "new_users": n} for (p, d), n in sorted(days.items())]


async def profile_topics_by_frequency() -> list[dict[str, Any]]:
    users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for project, user, topic, _ in current_slots():
        users[(project, topic)].append(user)
    rows = [{"project_id": p, "topic": t, "slots": len(us), "users": len(set(us))} for (p, t), us in users.items()]
    return sorted(rows, key=lambda r: (r["project_id"], -r["slots"], r["topic"]))


async def events_per_user() -> list[dict[str, Any]]:
    ends: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for f in extracted():
        if kept(f.project, f.user) and (f.project, f.user) != DROPPED_EVENT[:2]:
            assert f.took is not None
            ends[(f.project, f.user)].append(f.closed + f.took)
    rows = [
        {"project_id": p, "user_id": u, "events": len(e), "last_event_at": naive(max(e))} for (p, u), e in ends.items()
    ]
    return sorted(rows, key=lambda r: (-r["events"], r["project_id"], r["user_id"]))


async def llm_tokens_per_project_per_day() -> list[dict[str, Any]]:
    days: dict[tuple[str, date], Counter[str]] = defaultdict(Counter)
    for f in extracted():  # forgotten users' usage stays
        assert f.took is not None
        inp, out = f.tokens
        days[(f.project, (f.closed + f.took).date())].update(
            {"llm_calls": 1, "tokens_in": inp, "tokens_out": out, "tokens_total": inp + out}
        )
    return [{"project_id": p, "day": d, **dict(c)} for (p, d), c in sorted(days.items())]


async def flush_latency_percentiles() -> list[dict[str, Any]]:
    took: dict[str, list[float]] = defaultdict(list)
    for f in FLUSHES:
        if f.took is not None and kept(f.project, f.user):
            took[f.project].append(f.took.total_seconds())
    return [
        {
            "project_id": p,
            "flushes": len(s),
            "p50_p90_p99": pytest.approx([inclusive_quantile(s, q) for q in (0.5, 0.9, 0.99)]),
            "slowest": max(s),
        }
        for p, s in sorted(took.items())
    ]


async def dead_letters_by_reason() -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[datetime]] = defaultdict(list)
    for _, key, value, reason, when in DEAD:
        project = (key or b"").decode().partition(":")[0]
        groups[(project, value["kind"] if value else "undecodable", reason)].append(when)
    rows = [
        {"project_id": p, "kind": k, "reason": r, "dead_letters": len(w), "last_at": naive(max(w))}
        for (p, k, r), w in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r["dead_letters"], r["project_id"], r["kind"], r["reason"]))


async def users_with_the_most_slot_changes() -> list[dict[str, Any]]:
    changes: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for f in extracted():
        if kept(f.project, f.user):
            changes[(f.project, f.user)] += [(op, topic, sub) for op, topic, sub, _ in f.changes]
    rows = [
        {
            "project_id": p,
            "user_id": u,
            "changes": len(c),
            "added": sum(op == "add" for op, _, _ in c),
            "updated": sum(op == "update" for op, _, _ in c),
            "deleted": sum(op == "delete" for op, _, _ in c),
            "slots_touched": len({(t, s) for _, t, s in c}),
        }
        for (p, u), c in changes.items()
    ]
    return sorted(rows, key=lambda r: (-r["changes"], r["project_id"], r["user_id"]))[:20]


async def working_memory_backlog() -> list[dict[str, Any]]:
    waiting: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for project, user, when, status in stored_chats():
        if status in ("idle", "processing"):
            waiting[(project, user)].append((when, status))
    rows = [
        {
            "project_id": p,
            "user_id": u,
            "chats": len(w),
            "in_open_window": sum(s == "idle" for _, s in w),
            "in_extraction": sum(s == "processing" for _, s in w),
            "oldest_chat_at": naive(min(t for t, _ in w)),
        }
        for (p, u), w in waiting.items()
    ]
    return sorted(rows, key=lambda r: (-r["chats"], r["project_id"], r["user_id"]))


EXPECTED = {
    "Active users per day": active_users_per_day,
    "New users per day": new_users_per_day,
    "Profile topics by frequency": profile_topics_by_frequency,
    "Events per user": events_per_user,
    "LLM tokens per project per day": llm_tokens_per_project_per_day,
    "Flush latency percentiles": flush_latency_percentiles,
    "Dead letters by reason": dead_letters_by_reason,
    "Users with the most slot changes": users_with_the_most_slot_changes,
    "Working-memory backlog": working_memory_backlog,
}


@pytest.mark.parametrize("heading", list(EXPECTED))
async def test_query_returns_what_the_seed_implies(db: DatabaseView, heading: str) -> None:
    expected = await EXPECTED[heading]()
    assert expected, "the seed gives this query rows to return"
    rows = await run(db, heading)
    assert rows == expected
