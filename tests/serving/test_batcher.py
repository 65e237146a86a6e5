"""The micro-batcher: one bad request in a batch leaves every other answer intact."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest

from hymoerec.recommend import Recommendation, Recommender, RecommendError
from hymoerec.serving.app import create_app
from hymoerec.serving.batcher import MicroBatcher


def _histories(recommender: Recommender, count: int) -> list[list[str]]:
    users = recommender.data.users.external[:count]
    return [recommender.user_history(str(user))[-5:] for user in users]


class _Recording:
    """Wraps ``recommend_many`` to record the size of every model call."""

    def __init__(self, recommender: Recommender, poison: str | None = None) -> None:
        self.inner = recommender.recommend_many
        self.sizes: list[int] = []
        self.poison = poison

    def __call__(
        self, histories: Sequence[Sequence[str]], k: Sequence[int], exclude: Sequence[bool]
    ) -> list[Recommendation]:
        self.sizes.append(len(histories))
        if self.poison is not None and any(self.poison in h for h in histories):
            raise RuntimeError("model failure")  # any failure, not only a RecommendError
        return self.inner(histories, k, exclude)


async def _batch(
    recommender: Recommender, histories: list[list[str]], ks: list[int]
) -> list[Recommendation | BaseException]:
    batcher = MicroBatcher(recommender, max_batch=128)
    await batcher.start()
    try:
        return await asyncio.gather(
            *(batcher.recommend(h, k, True) for h, k in zip(histories, ks, strict=True)),
            return_exceptions=True,
        )
    finally:
        await batcher.stop()


def test_a_bad_k_in_a_batch_fails_only_its_own_request(
    small_recommender: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: 80 valid k=5 requests and one k=50 on a 12-item catalogue."""
    recording = _Recording(small_recommender)
    monkeypatch.setattr(small_recommender, "recommend_many", recording)
    histories = _histories(small_recommender, 81)
    ks = [5] * 40 + [50] + [5] * 40
    answers = asyncio.run(_batch(small_recommender, histories, ks))
    assert recording.sizes[0] == 81  # all of them really shared the first model call
    bad = answers.pop(40)
    assert isinstance(bad, RecommendError) and "k=50" in str(bad)
    want = recording.inner(histories[:40] + histories[41:], 5, True)
    assert [a.items for a in answers] == [w.items for w in want]  # type: ignore[union-attr]


def test_a_failing_model_call_fails_only_the_request_that_caused_it(
    small_recommender: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    histories = _histories(small_recommender, 20)
    poison = "not-an-item"
    histories[7] = [*histories[7], poison]
    recording = _Recording(small_recommender, poison)
    monkeypatch.setattr(small_recommender, "recommend_many", recording)
    answers = asyncio.run(_batch(small_recommender, histories, [3] * 20))
    assert isinstance(answers.pop(7), RuntimeError)
    want = recording.inner(histories[:7] + histories[8:], 3, True)
    assert [a.items for a in answers] == [w.items for w in want]  # type: ignore[union-attr]


def test_concurrent_http_requests_with_one_bad_one(small_recommender: Recommender) -> None:
    """Through the whole app: the k=50 request gets its own 422, the 80 others their answers."""
    app = create_app(small_recommender)
    histories = _histories(small_recommender, 80)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        await app.state.batcher.start()  # the ASGI transport runs no lifespan
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                bad = client.post("/recommend", json={"history": histories[0], "k": 50})
                good = [client.post("/recommend", json={"history": h, "k": 5}) for h in histories]
                return list(await asyncio.gather(bad, *good))
        finally:
            await app.state.batcher.stop()

    bad, *good = asyncio.run(run())
    assert bad.status_code == 422 and "catalogue size" in bad.text
    assert [r.status_code for r in good] == [200] * 80
    want = small_recommender.recommend_many(histories, 5)
    assert [[i["item_id"] for i in r.json()["items"]] for r in good] == [w.items for w in want]
    assert app.state.batcher.batches < 80  # they were batched
