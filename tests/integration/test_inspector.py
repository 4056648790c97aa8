"""The inspector (``/inspector``): its files served without a token, the API extensions it reads
(a user's tasks, the chats a flush read, working memory, gists, the context's token count), and
a person's session in headless Chromium against the real stack (``tests/js/inspector_session.cjs``,
playwright-core driving Debian's ``chromium``; ``scripts/test.sh`` installs both). The session's
screenshots are written to ``tests/artifacts/`` (git-ignored)."""

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from memstream.projects_admin import create_project
from memstream.stack import Stack
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, new_user
from tests.support.processes import finished
from tests.support.stack import TOKEN

pytestmark = pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url, "llm_max_attempts": 1})

JS = Path(__file__).parents[1] / "js"
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium")
SESSION_TIMEOUT = 180.0  # seconds for the whole browser session

PARIS = {
    "changes": [{"op": "add", "topic": "basic_info", "sub_topic": "city", "content": "lives in Paris"}],
    "event_tip": "Alice told us where she lives.",
    "event_tags": [{"tag": "mood", "value": "cheerful"}],
}


@pytest.fixture(scope="module")
async def alice(api: Api, llm: ScriptedLLM) -> dict[str, Any]:
    """A user whose sync flush made one slot, then a chat still in the window (working memory)."""
    user = new_user()
    await api.ok("POST", "/project/profile_config", json={"profile_config": "event_tags:\n  - name: mood\n"})
    llm.script(PARIS)
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("Hi, I am Alice and I live in Paris."))
    status, flushed = await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert status == 200 and flushed["errno"] == 0, flushed
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("Tomorrow I fly to Lisbon."))
    [slot] = (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
    return {"user_id": user, "slot": slot, "flush_task": flushed["task_id"]}


@pytest.fixture(scope="module")
async def bob(api: Api, llm: ScriptedLLM) -> dict[str, Any]:
    """A user whose extraction failed: the scripted LLM answers malformed JSON, twice."""
    user = new_user()
    llm.script("not json", "still { not json")
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like coffee."))
    status, flushed = await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert flushed["errno"] == 500, flushed
    return {"user_id": user, "flush_task": flushed["task_id"]}


async def test_the_page_is_served_without_a_token(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.url}/inspector", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/inspector/"
        async with http.get(f"{stack.url}/inspector/") as r:
            page = await r.text()
            assert r.status == 200 and r.content_type == "text/html" and 'src="inspector.js"' in page
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        for name, kind in (("inspector.js", "text/javascript"), ("inspector.css", "text/css")):
            async with http.get(f"{stack.url}/inspector/{name}") as r:
                assert r.status == 200 and r.content_type == kind and len(await r.read()) > 1000
        async with http.get(f"{stack.url}/inspector/secrets.txt") as r:
            assert r.status == 404 and (await r.json())["errno"] == 404
        async with http.get(f"{stack.url}/api/v1/project/users") as r:
            assert r.status == 401  # the data stays behind the token


async def test_a_users_tasks_newest_first_with_their_error(api: Api, alice: dict, bob: dict) -> None:
    [failed, *_] = (await api.ok("GET", f"/users/tasks/{bob['user_id']}"))["tasks"]
    assert failed["status"] == "failed" and "malformed LLM answer" in failed["error"]
    tasks = (await api.ok("GET", f"/users/tasks/{alice['user_id']}"))["tasks"]
    assert [t["status"] for t in tasks] == ["running", "completed", "completed"]  # the open window's insert first
    assert alice["flush_task"] in {t["task_id"] for t in tasks}
    assert all(t["user_id"] == alice["user_id"] for t in tasks)
    assert len((await api.ok("GET", f"/users/tasks/{alice['user_id']}", params={"limit": "1"}))["tasks"]) == 1


async def test_the_chats_a_flush_read(api: Api, alice: dict) -> None:
    user, slot = alice["user_id"], alice["slot"]
    [change] = (await api.ok("GET", f"/users/profile/{user}/{slot['id']}/history"))["history"]
    assert change["source"] == "flush" and change["source_id"] == alice["flush_task"]
    flushed = await api.ok("GET", f"/users/flush/{user}/{change['source_id']}")
    assert [m["content"] for b in flushed["blobs"] for m in b["messages"]] == ["Hi, I am Alice and I live in Paris."]
    assert (await api.ok("GET", f"/users/flush/{new_user()}/{change['source_id']}"))["blobs"] == []


async def test_working_memory_gists_and_the_context_count(api: Api, alice: dict) -> None:
    user = alice["user_id"]
    working = (await api.ok("GET", f"/users/buffer/{user}/chat"))["blobs"]
    assert [m["content"] for b in working for m in b["messages"]] == ["Tomorrow I fly to Lisbon."]
    assert (await api.ok("GET", f"/users/buffer/{user}/doc"))["blobs"] == []
    [event] = (await api.ok("GET", f"/users/event/{user}"))["events"]
    gists = (await api.ok("GET", f"/users/event_gist/{user}"))["gists"]
    assert gists and {g["event_id"] for g in gists} == {event["id"]}
    counted = await api.ok("GET", f"/users/context/{user}/tokens", params={"max_token_size": "300"})
    plain = await api.ok("GET", f"/users/context/{user}", params={"max_token_size": "300"})
    assert counted["context"] == plain["context"] and "Paris" in plain["context"] and "Lisbon" in plain["context"]
    assert 0 < counted["tokens"] <= counted["max_token_size"] == 300


@pytest.fixture(scope="module")
def browser_tools() -> str:
    if NODE is None:
        pytest.skip("Node.js is not installed (the machines have it: /usr/bin/node)")
    if CHROMIUM is None:
        pytest.skip(
            "no browser: Debian's chromium is not installed and could not be (scripts/test.sh installs it as root)"
        )
    assert (JS / "node_modules" / "playwright-core").is_dir(), "run: npm ci --prefix tests/js"
    return CHROMIUM


@pytest.fixture(scope="module")
async def session(browser_tools: str, stack: Stack, alice: dict, bob: dict) -> dict[str, Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    slot = alice["slot"]
    plan = {
        "chromium": browser_tools,
        "url": stack.url,
        "token": TOKEN,
        "wrong_token": "sk-nobody-not-a-real-secret",
        "user_id": alice["user_id"],
        "failed_user_id": bob["user_id"],
        "slot_id": slot["id"],
        "slot_content": slot["content"],
        "slot_attributes": slot["attributes"],
        "updated_content": "lives in Lyon since spring",
        "project_token": await create_project(stack.settings, f"inspect_{uuid.uuid4().hex[:8]}"),
        "artifacts": str(ARTIFACTS),
    }
    plan_file = ARTIFACTS / "inspector-session.json"
    plan_file.write_text(json.dumps(plan))
    status, out, err = await finished(NODE, str(JS / "inspector_session.cjs"), str(plan_file), timeout=SESSION_TIMEOUT)
    assert status == 0, f"the browser session failed:\n{err.decode()}"
    got = json.loads(out)
    print(f"\ninspector screenshots: {got['screenshot']} and {got['phoneScreenshot']}")
    return {**plan, **got}


async def test_a_wrong_token_is_refused_with_a_clear_message(session: dict) -> None:
    assert "refused" in session["refused"] and "401" in session["refused"] and "invalid token" in session["refused"]
    assert session["keptAfterRefusal"] == 0


async def test_another_projects_token_sees_none_of_these_users_nor_the_pipeline(session: dict) -> None:
    assert session["keptAfterSignOut"] == 0
    assert session["projectUsers"] == "no users match"
    assert f"user {session['user_id']} not found" in session["projectUser"]
    assert "needs the root token" in session["projectPipeline"]


async def test_the_token_stays_in_the_tab_never_in_a_url(session: dict) -> None:
    assert session["tokenStored"] == [TOKEN]
    assert session["urls"] and not any(TOKEN in url for url in session["urls"])
    assert session["apiCalls"] > 5 and session["unauthenticatedApiCalls"] == []


async def test_the_user_is_found_with_counts_and_the_flushed_slot_shown(session: dict) -> None:
    row = session["usersRow"].split("\t")
    assert row[0] == session["user_id"] and row[2:4] == ["1", "1"]  # one slot, one event
    assert "city" in session["slotBefore"] and "lives in Paris" in session["slotBefore"]
    [version] = session["historyBefore"]
    assert "v1 · add" in version and "from flush" in version and "basic_info::city = lives in Paris" in version


async def test_an_update_through_the_api_shows_both_versions(session: dict) -> None:
    assert session["updateErrno"] == 0 and "lives in Lyon since spring" in session["slotAfter"]
    first, second = session["historyAfter"]
    assert "v1 · add" in first and "from flush" in first and "lives in Paris" in first
    assert "v2 · update" in second and "manual edit" in second and "lives in Lyon since spring" in second
    assert "Hi, I am Alice and I live in Paris." in session["flushChats"]


async def test_working_memory_events_and_the_context_as_the_api_answers_it(session: dict, api: Api) -> None:
    assert "not yet extracted" in session["working"] and "Tomorrow I fly to Lisbon." in session["working"]
    assert "Alice told us where she lives." in session["events"] and "mood: cheerful" in session["events"]
    context = (await api.ok("GET", f"/users/context/{session['user_id']}"))["context"]
    assert session["context"] == context and "Lyon since spring" in context  # read after the update
    used, budget = session["contextTokens"].split(" tokens")[0].split(" / ")
    assert 0 < int(used) <= int(budget) == 1000


async def test_a_failed_task_shows_its_error(session: dict) -> None:
    assert "✗ failed" in session["failedTask"] and "malformed LLM answer" in session["failedTask"]


async def test_the_pipeline_shows_lag_dead_letters_and_concurrency_live(session: dict) -> None:
    pipeline = session["pipeline"]
    assert "healthy" in pipeline and "Consumer lag per stage" in pipeline
    assert "Dead letters by reason" in pipeline and "malformed LLM answer" in pipeline  # Bob's flush, parked
    assert "extraction slots in use" in pipeline
    assert session["pipelineRefreshed"] is True


async def test_the_user_page_fits_a_phone_and_is_saved_as_a_screenshot(session: dict) -> None:
    assert session["phoneOverflow"] <= 0
    assert session["screenshot"] == str(ARTIFACTS / "inspector-user.png")
    assert min(session["screenshotBytes"]) > 10_000  # a page was drawn, not a blank


async def test_the_time_slider_is_there_exactly_when_the_api_reads_the_profile_as_of(session: dict, api: Api) -> None:
    async with api.session.get(api.base + "/openapi.json") as response:
        read = (await response.json())["paths"]["/api/v1/users/profile/{user_id}"]["get"]
    takes_as_of = any(p["name"] == "as_of" for p in read["parameters"])
    assert session["timeSliders"] == (1 if takes_as_of else 0)
