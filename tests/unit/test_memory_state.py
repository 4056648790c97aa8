"""A user's memory as records on the state topic: each step writes only what changed, each record
is bounded, and restoring the records gives the memory back."""

from datetime import UTC, datetime

from streams.limits import Limits
from streams.memory_state import changes, restore
from streams.owner import Owner, UserMemory
from streams.records import BlobInserted, BlobType, FlushRequested, ProfileEdited

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = Owner(Limits(buffer_tokens=1000, buffer_bytes=8192, blob_bytes=8192), max_queued=10)


def blob(n: int) -> BlobInserted:
    return BlobInserted(
        project_id="p",
        user_id="u",
        blob_id=f"b{n}",
        task_id=f"t{n}",
        blob_type=BlobType.chat,
        blob_data={"messages": [{"role": "user", "content": f"line {n} " * 20}]},
        created_at=T0,
    )


def test_steps_write_what_changed_and_restore_gives_the_memory_back() -> None:
    state: dict[str, bytes] = {}
    memory = UserMemory("p", "u")
    sizes = []
    commands = [
        blob(1),
        blob(2),
        ProfileEdited(project_id="p", user_id="u", op="add", topic="a", sub_topic="b", content="c"),
        blob(3),
        FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f1"),
        blob(4),
    ]
    for command in commands:
        step = OWNER.on_command(memory, command, T0)
        written = changes(memory, step.memory)
        sizes.append(len(written))
        for key, value in written.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        memory = step.memory
    assert sizes[:2] == [2, 2]  # each blob: the header and that blob, nothing else
    restored = restore(state)["p:u"]
    assert restored == memory
    assert restored.running and [getattr(q, "flush_id", None) for q in restored.queue] == ["f1"]
    assert {k.split("|")[1] for k in state} == {"h", "b", "s", "q"}
    assert max(len(v) for v in state.values()) < 16_000
    assert changes(memory, memory) == {}
