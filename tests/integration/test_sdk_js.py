"""Memobase's own JavaScript SDK (@memobase/memobase 0.0.18, pinned in tests/js), unchanged,
against Memstream: ``tests/js/sdk_session.cjs`` calls every method of its ``MemoBaseClient`` and
``User`` classes under Node.js, as a new user would, and prints what each returned; the tests
check those answers. ``scripts/test.sh`` installs the package (``npm ci --prefix tests/js``)."""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from memstream.stack import Stack
from tests.support.client import new_user
from tests.support.processes import finished
from tests.support.stack import TOKEN

JS = Path(__file__).parents[1] / "js"
NODE = shutil.which("node")
SESSION_TIMEOUT = 120.0  # seconds; the session waits on two synchronous flushes


@pytest.fixture(scope="module")
async def session(stack: Stack) -> dict[str, Any]:
    if NODE is None:
        pytest.skip("Node.js is not installed (the machines have it: /usr/bin/node)")
    assert (JS / "node_modules" / "@memobase" / "memobase").is_dir(), "run: npm ci --prefix tests/js"
    user_id = new_user()
    status, out, err = await finished(
        NODE, str(JS / "sdk_session.cjs"), stack.url, TOKEN, user_id, timeout=SESSION_TIMEOUT
    )
    assert status == 0, f"the JS SDK session failed:\n{err.decode()}"
    return {"user_id": user_id, **json.loads(out)}


async def test_project_calls(session: dict[str, Any]) -> None:
    assert session["ping"] is True and session["configSet"] is True
    assert "topic: pets" in session["config"]
    assert [u["id"] for u in session["users"]["users"]] == [session["user_id"]]
    assert isinstance(session["usage"], list) and len(session["usage"]) == 7
    assert session["userDeleted"] is True and session["gone"] == "ServerError"
    assert session["createdId"] != session["user_id"]


async def test_user_and_blob_calls(session: dict[str, Any]) -> None:
    assert session["updatedId"] == session["user_id"]
    assert session["fetchedFields"]["data"] == {"plan": "pro"}
    assert session["flushed"] is True
    assert session["blob"]["blob_type"] == "chat"  # the SDK hands back the answer as is
    assert session["blob"]["blob_data"]["messages"][0]["content"].startswith("Hi, my name is Frank")
    assert len(session["chatIds"]) == 1
    assert session["deletedDoc"] is True and session["docIdsAfterDelete"] == []


async def test_profile_calls(session: dict[str, Any]) -> None:
    profile = {(p["topic"], p["sub_topic"]): p["content"] for p in session["profile"]}
    assert profile[("basic_info", "name")] == "Frank" and profile[("basic_info", "city")] == "Oslo"
    assert profile[("work", "title")] == "sailor"
    # only_topics and the SDK's topic_limits ({"basic_info": 1}) both apply
    assert [p["topic"] for p in session["onlyBasic"]] == ["basic_info"]  # of name and city, one kept
    assert session["profileUpdated"] is True and session["profileDeleted"] is True
    updated = {p["id"]: p["content"] for p in session["afterUpdate"]}
    assert updated[session["addedId"]] == "Rex, a wire-haired terrier"
    assert session["addedId"] not in {p["id"] for p in session["afterDelete"]}


async def test_event_and_context_calls(session: dict[str, Any]) -> None:
    assert len(session["events"]) == 2
    assert session["eventUpdated"] is True
    tips = [e["event_data"]["event_tip"] for e in session["updatedEvents"]]
    assert "Frank told us about his job at sea" in tips
    assert session["search"] and session["search"][0]["event_data"]["event_tip"] == "Frank told us about his job at sea"
    assert any("Oslo" in g["gist_data"]["content"] for g in session["gists"])
    assert "Oslo" in session["context"] and "sailor" in session["context"]
    assert session["customContext"].startswith("PROFILE:\n") and "EVENTS:" in session["customContext"]
    assert session["eventDeleted"] is True and len(session["eventsAfterDelete"]) == 1
