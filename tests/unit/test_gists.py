"""How an event splits into gists, and their ids and embeddings (no broker)."""

import pytest

from streams.embeddings import EmbeddingFailed
from streams.gists import gist_texts, searchable
from streams.limits import Limits
from streams.records import EventData, ProfileDelta, derived_id

DATA = EventData(
    event_tip="Ann booked a trip to Rome. She leaves on 2026-05-02!\n- packs light\n2) wants a window seat\n\nShe booked a trip to Rome.",
    profile_delta=[ProfileDelta(content="Rome", attributes={"topic": "travel_plans", "sub_topic": "next_city"})],
)


class CountingEmbedder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(texts)
        if self.fail:
            raise EmbeddingFailed("down")
        return [[float(len(t))] for t in texts]


def test_tip_splits_into_sentences_and_bullets_then_profile_deltas() -> None:
    assert gist_texts(DATA) == [
        "Ann booked a trip to Rome.",
        "She leaves on 2026-05-02!",
        "packs light",
        "wants a window seat",
        "She booked a trip to Rome.",
        "travel plans / next city: Rome",
    ]
    assert gist_texts(EventData(event_tip="喜欢咖啡。也喜欢茶。")) == ["喜欢咖啡。", "也喜欢茶。"]
    assert gist_texts(EventData(event_tip="Tea. tea.")) == ["Tea."]  # repeats kept once
    assert gist_texts(EventData()) == []


async def test_one_call_embeds_the_event_and_its_gists_with_derived_ids() -> None:
    embedder = CountingEmbedder()
    embedding, gists = await searchable(DATA, "event-1", embedder, Limits())
    assert embedder.calls == [[DATA.event_tip, *gist_texts(DATA)]]
    assert embedding == [float(len(DATA.event_tip))]
    assert [g.gist_id for g in gists] == [derived_id("event-1", "gist", str(i)) for i in range(6)]
    assert all(g.embedding == [float(len(g.content))] for g in gists)
    again = await searchable(DATA, "event-1", embedder, Limits())
    assert again == (embedding, gists)  # a replay: same ids, same vectors


async def test_without_embedder_gists_have_no_vectors_and_failures_propagate() -> None:
    embedding, gists = await searchable(DATA, "event-1", None, Limits())
    assert embedding is None and len(gists) == 6 and all(g.embedding is None for g in gists)
    only_delta = EventData(profile_delta=DATA.profile_delta)
    embedder = CountingEmbedder()
    await searchable(only_delta, "e", embedder, Limits())
    assert embedder.calls == [["travel plans / next city: Rome"] * 2]  # no tip: the gists stand for the event
    with pytest.raises(EmbeddingFailed):
        await searchable(DATA, "event-1", CountingEmbedder(fail=True), Limits())
    assert await searchable(EventData(), "e", embedder, Limits()) == (None, [])
    assert len(embedder.calls) == 1  # nothing to embed, no call
