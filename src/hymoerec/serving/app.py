"""The HTTP API: ``POST /recommend``, ``GET /items/{item_id}``, ``GET /health``.

Limits (enforced, and visible in the OpenAPI schema): ``k`` from 1 to ``MAX_K`` (and at
most the catalogue size); a history of at most ``MAX_HISTORY`` item ids (only the most
recent ``max_len`` reach the model, all of them count for ``exclude_seen``); ids of 1 to
``MAX_ID_CHARS`` characters without control characters, or integers from 0 to
``MAX_INT_ID``. A payload that breaks them, or is not strict JSON, gets a 422 naming the
field (with at most a short excerpt of the input); an unknown user or item gets a 404; a
body over the size limit gets a 413 and a missing API key a 401 (``guards.py``).

Each request is validated in full, catalogue size included, before it joins a
micro-batch, so one client's bad request can never fail another's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
)

from hymoerec.recommend import Recommendation, Recommender, RecommendError, UnknownIdError
from hymoerec.serving.batcher import MicroBatcher
from hymoerec.serving.guards import API_KEY_HEADER, ApiKey, BodyLimit, excerpt, strict_json

MAX_K = 100
MAX_HISTORY = 2_000
MAX_ID_CHARS = 256
MAX_INT_ID = 2**53 - 1  # the largest integer every JSON parser holds exactly
MAX_BODY_BYTES = 1024 * 1024  # the default; a full history of long ids needs about 0.5 MiB
MAX_ERRORS = 20  # validation errors listed in one 422
# no C0/C1 control characters: "1\u0000" must not alias item "1" in the id maps
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"


def _integral(value: Any) -> Any:
    """JSON has one number type: 7.0 is the integer 7 (as JSON Schema says); 7.5 is not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# the validator after the bounds, or the bounds would be lost from the JSON schema
TextId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
IntId = Annotated[StrictInt, Field(ge=0, le=MAX_INT_ID), BeforeValidator(_integral)]
RawId = TextId | IntId


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: Annotated[StrictInt, Field(ge=1, le=MAX_K), BeforeValidator(_integral)] = 10
    exclude_seen: StrictBool = True


class HistoryRequest(_Options):
    """Recommendations after a history of raw item ids, oldest first."""

    history: Annotated[list[RawId], Field(max_length=MAX_HISTORY)]


class UserRequest(_Options):
    """Recommendations for a user of the training data, from their whole history."""

    user: RawId


def _source(body: Any) -> str | None:
    """Which request a body is, by its keys; None (an error) for both or neither."""
    if isinstance(body, dict) and ("history" in body) != ("user" in body):
        return "history" if "history" in body else "user"
    return None


# One of two complete schemas (``oneOf`` in OpenAPI): exactly one of history and user.
RecommendRequest = Annotated[
    Annotated[HistoryRequest, Tag("history")] | Annotated[UserRequest, Tag("user")],
    Discriminator(
        _source,
        custom_error_type="one_source",
        custom_error_message="expected a JSON object (content-type: application/json) "
        "with exactly one of 'history' and 'user'",
    ),
]


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


class Problem(BaseModel):
    detail: str


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


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class _StrictJSONRoute(APIRoute):
    """Bodies parsed by ``strict_json``: NaN, Infinity, bad UTF-8 and deep nesting are 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    safe = {
        "type": str(error.get("type", "")),
        "loc": [part if isinstance(part, int) else excerpt(part) for part in error["loc"]],
        "msg": excerpt(str(error.get("msg", "")), chars=200),
        "input": excerpt(error.get("input")),
    }
    if error.get("ctx"):
        safe["ctx"] = {str(key): excerpt(value) for key, value in error["ctx"].items()}
    return safe


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    """422 listing the broken fields, echoing no more than a short excerpt of any input."""
    assert isinstance(error, RequestValidationError)
    errors = [_safe_error(e) for e in error.errors()[:MAX_ERRORS]]
    return JSONResponse({"detail": errors}, status_code=422)


def _k_too_large(k: int, num_items: int) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "less_than_equal",
                "loc": ("body", "k"),
                "msg": f"Input should be less than or equal to {num_items} (the catalogue size)",
                "input": k,
                "ctx": {"le": num_items},
            }
        ]
    )


def create_app(
    recommender: Recommender,
    max_batch: int = 64,
    max_body_bytes: int = MAX_BODY_BYTES,
    api_key: str | None = None,
) -> FastAPI:
    """The API for ``recommender``; with ``api_key``, every path but ``OPEN_PATHS`` needs it."""
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
        exception_handlers={RequestValidationError: _validation_error},
    )
    app.router.route_class = _StrictJSONRoute
    max_k = min(MAX_K, recommender.num_items)
    generic_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """The schema, with the largest ``k`` of this catalogue (it may be below ``MAX_K``)."""
        schema = generic_openapi()  # built once and cached by FastAPI
        for name in ("HistoryRequest", "UserRequest"):
            schema["components"]["schemas"][name]["properties"]["k"]["maximum"] = max_k
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.batcher = batcher
    # outermost first: the size check runs before anything reads the body
    if api_key:
        app.add_middleware(ApiKey, key=api_key)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    # declares the header in the OpenAPI schema (and /docs); ApiKey enforces it
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
    guarded = [Security(key_header)] if api_key else []
    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": Problem, "description": f"body over {max_body_bytes} bytes"}
    }
    if api_key:
        errors[401] = {"model": Problem, "description": f"missing or wrong {API_KEY_HEADER}"}

    @app.post(
        "/recommend",
        dependencies=guarded,
        responses={404: {"model": Problem, "description": "unknown user"}, **errors},
    )
    async def recommend(request: RecommendRequest) -> RecommendResponse:
        """Top-k items to come next after a history, or for a known user."""
        if request.k > recommender.num_items:
            raise _k_too_large(request.k, recommender.num_items)
        try:
            if isinstance(request, UserRequest):
                history = recommender.user_history(request.user)
            else:
                history = [str(item) for item in request.history]
            result = await batcher.recommend(history, request.k, request.exclude_seen)
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
        except RecommendError as error:
            raise HTTPException(status_code=422, detail=str(error)) from error
        return _response(result)

    @app.get(
        "/items/{item_id}",
        dependencies=guarded,
        responses={404: {"model": Problem, "description": "unknown item"}, **errors},
    )
    async def item(
        item_id: Annotated[str, Path(max_length=MAX_ID_CHARS, pattern=ID_PATTERN)],
    ) -> ItemInfo:
        """Metadata and number of interactions of one item."""
        try:
            info = recommender.item(item_id)
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
        interactions = info.pop("interactions")
        info.pop("item_id")
        return ItemInfo(item_id=item_id, interactions=interactions, metadata=info)

    @app.get("/health", responses=errors)
    async def health() -> Health:
        """Always open, even with an API key: for load balancers and liveness probes."""
        return Health(
            status="ok",
            model=recommender.name,
            items=recommender.num_items,
            users=recommender.data.num_users,
            max_len=recommender.max_len,
        )

    return app
