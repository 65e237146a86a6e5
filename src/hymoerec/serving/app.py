"""The HTTP API: ``POST /recommend``, ``GET /items/{item_id}``, ``GET /health``.

Limits (enforced, and visible in the OpenAPI schema): ``k`` from 1 to ``MAX_K`` (and at
most the catalogue size); a history of at most ``MAX_HISTORY`` item ids (only the most
recent ``max_len`` reach the model, all of them count for ``exclude_seen``). A payload
that breaks them, or is not valid JSON, gets a 422 naming the field; an unknown user or
item gets a 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from hymoerec.recommend import Recommendation, Recommender, RecommendError, UnknownIdError
from hymoerec.serving.batcher import MicroBatcher

MAX_K = 100
MAX_HISTORY = 2_000

RawId = StrictStr | StrictInt


class RecommendRequest(BaseModel):
    """Exactly one of ``history`` (raw item ids, oldest first) or ``user``."""

    model_config = ConfigDict(extra="forbid")

    history: Annotated[list[RawId], Field(max_length=MAX_HISTORY)] | None = None
    user: RawId | None = None
    k: Annotated[StrictInt, Field(ge=1, le=MAX_K)] = 10
    exclude_seen: StrictBool = True

    @model_validator(mode="after")
    def _one_source(self) -> RecommendRequest:
        if (self.history is None) == (self.user is None):
            raise ValueError("give exactly one of 'history' and 'user'")
        return self


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    unknown_items: list[str] = Field(description="history ids dropped as unknown")
    history_length: int = Field(description="known history items that reached the model")
    fallback: str | None = Field(description="why popularity replaced the model, if it did")


class ItemInfo(BaseModel):
    item_id: str
    interactions: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class Health(BaseModel):
    status: str
    model: str
    items: int
    users: int
    max_len: int


def _response(result: Recommendation) -> RecommendResponse:
    return RecommendResponse(
        items=[
            RecommendedItem(rank=rank, item_id=item, score=score, metadata=meta)
            for rank, (item, score, meta) in enumerate(
                zip(result.items, result.scores, result.metadata, strict=True), start=1
            )
        ],
        unknown_items=result.unknown,
        history_length=result.history_length,
        fallback=result.fallback,
    )


def create_app(recommender: Recommender, max_batch: int = 64) -> FastAPI:
    batcher = MicroBatcher(recommender, max_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="hymoerec",
        summary="Next-item recommendations from a trained sequential recommender",
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.post("/recommend", responses={404: {"description": "unknown user"}})
    async def recommend(request: RecommendRequest) -> RecommendResponse:
        """Top-k items to come next after a history, or for a known user."""
        try:
            if request.user is not None:
                history = recommender.user_history(request.user)
            else:
                history = [str(item) for item in request.history or []]
            result = await batcher.recommend(history, request.k, request.exclude_seen)
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
        except RecommendError as error:
            raise HTTPException(status_code=422, detail=str(error)) from error
        return _response(result)

    @app.get("/items/{item_id}", responses={404: {"description": "unknown item"}})
    async def item(item_id: str) -> ItemInfo:
        """Metadata and number of interactions of one item."""
        try:
            info = recommender.item(item_id)
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
        interactions = info.pop("interactions")
        info.pop("item_id")
        return ItemInfo(item_id=item_id, interactions=interactions, metadata=info)

    @app.get("/health")
    async def health() -> Health:
        return Health(
            status="ok",
            model=recommender.name,
            items=recommender.num_items,
            users=recommender.data.num_users,
            max_len=recommender.max_len,
        )

    return app


def serve(
    recommender: Recommender, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64
) -> None:
    import uvicorn

    app = create_app(recommender, max_batch)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
