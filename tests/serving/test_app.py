"""The HTTP API through FastAPI's test client, on a tiny model trained on ML-100K."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from hymoerec.recommend import Recommender
from hymoerec.serving.app import MAX_HISTORY, MAX_ID_CHARS, MAX_K, create_app


@pytest.fixture(scope="module")
def recommender(tiny_run: Path) -> Recommender:
    torch.set_num_threads(1)
    return Recommender.load(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def client(recommender: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(recommender)) as test_client:
        yield test_client


def test_health(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "model": "hymoerec on ml-100k",
        "items": 1349,
        "users": 943,
        "max_len": 20,
    }


def test_recommend_history_matches_the_python_api(
    client: TestClient, recommender: Recommender
) -> None:
    response = client.post("/recommend", json={"history": ["1", 50, "ghost"], "k": 5})
    assert response.status_code == 200
    body = response.json()
    want = recommender.recommend(["1", "50", "ghost"], k=5)
    assert [item["item_id"] for item in body["items"]] == want.items
    assert [item["rank"] for item in body["items"]] == [1, 2, 3, 4, 5]
    assert body["unknown_items"] == ["ghost"] and body["history_length"] == 2
    assert body["fallback"] is None


def test_recommend_user_and_fallback(client: TestClient, recommender: Recommender) -> None:
    body = client.post("/recommend", json={"user": 7, "k": 3}).json()
    assert [i["item_id"] for i in body["items"]] == recommender.recommend_users([7], 3)[0].items
    empty = client.post("/recommend", json={"history": [], "k": 3}).json()
    assert empty["fallback"] == "empty history: most popular items"


def test_many_concurrent_requests_each_get_their_own_answer(
    client: TestClient, recommender: Recommender
) -> None:
    users = [str(u) for u in range(1, 41)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda u: client.post("/recommend", json={"user": u}).json(), users))
    want = recommender.recommend_users(users, 10)
    assert [[i["item_id"] for i in b["items"]] for b in bodies] == [w.items for w in want]


def test_items_endpoint(client: TestClient) -> None:
    body = client.get("/items/1").json()
    assert body["item_id"] == "1" and body["interactions"] > 0
    assert body["metadata"]["title"] == "Toy Story (1995)"
    missing = client.get("/items/ghost")
    assert missing.status_code == 404 and "ghost" in missing.json()["detail"]


def test_unknown_user_is_404(client: TestClient) -> None:
    response = client.post("/recommend", json={"user": "ghost"})
    assert response.status_code == 404 and "ghost" in response.json()["detail"]


def _fields(response) -> set[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    return {str(part) for error in response.json()["detail"] for part in error["loc"]}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"history": ["1"], "k": 0}, "k"),
        ({"history": ["1"], "k": MAX_K + 1}, "k"),
        ({"history": ["1"], "k": "ten"}, "k"),
        ({"history": "1,2,3"}, "history"),
        ({"history": [1.5]}, "history"),
        ({"history": ["1"] * (MAX_HISTORY + 1)}, "history"),
        ({"history": ["1"], "exclude_seen": "maybe"}, "exclude_seen"),
        ({"history": ["1"], "colour": "red"}, "colour"),
    ],
)
def test_invalid_payloads_name_the_field(client: TestClient, payload: dict, field: str) -> None:
    fields = _fields(client.post("/recommend", json=payload))
    assert field in fields


def test_a_body_that_is_not_a_json_object_is_422(client: TestClient) -> None:
    for body, headers in ((b'{"history": ["1"]}', {"content-type": "text/plain"}), (b"[1]", JSON)):
        response = client.post("/recommend", content=body, headers=headers)
        assert response.status_code == 422
        assert "expected a JSON object (content-type: application/json)" in response.text


def test_history_and_user_are_exclusive(client: TestClient) -> None:
    for payload in ({"history": ["1"], "user": "1"}, {"k": 3}):
        response = client.post("/recommend", json=payload)
        assert response.status_code == 422
        assert "exactly one of 'history' and 'user'" in response.text


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"history": [1, 2',
        b'{"history": ["1"], "k": NaN}',
        b'{"history": ["1"], "k": Infinity}',
        b'{"history": ["1"], "k": -Infinity}',
        b'{"history": ["1"], "k": 1e400}',
        b'{"history": ["1"], "exclude_seen": NaN}',
        b'{"history": [NaN]}',
        b'{"history": ["1"], "k": 1' + b"0" * 5000 + b"}",  # more digits than int() takes
        b'{"history": ["\xff"]}',  # not UTF-8
        b'{"history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested too deeply
    ],
)
def test_what_strict_json_forbids_is_422(client: TestClient, body: bytes) -> None:
    response = client.post("/recommend", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"
    # the keep-alive connection stays usable afterwards
    assert client.post("/recommend", json={"history": ["1"], "k": 2}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"history": ["\\ud800"]}', "history"),  # a lone surrogate cannot be answered
        (b'{"history": ["1"], "k": "\\udfff"}', "k"),
        (b'{"user": "\\ud800"}', "user"),
        (b'{"history": ["1"], "\\ud800": 1}', "body"),
        (b'{"history": ["1\\u0000"]}', "history"),  # would alias item "1"
        (b'{"history": ["1\\n"]}', "history"),
        (b'{"history": ["1\\u0085"]}', "history"),
        (b'{"user": "7\\u0000"}', "user"),
        (b'{"history": [""]}', "history"),
        (b'{"history": [-1]}', "history"),
        (b'{"user": 99999999999999999999}', "user"),
    ],
)
def test_surrogates_control_characters_and_odd_ids_are_422(
    client: TestClient, body: bytes, field: str
) -> None:
    response = client.post("/recommend", content=body, headers=JSON)
    assert field in _fields(response)


def test_item_ids_in_the_path_are_checked(client: TestClient) -> None:
    assert client.get("/items/1").status_code == 200
    for path in ("/items/1%00", "/items/1%0A", "/items/" + "1" * 300):
        response = client.get(path)
        assert response.status_code == 422, path
        assert "item_id" in _fields(response)


def test_errors_echo_only_a_short_excerpt(client: TestClient) -> None:
    huge = "x" * 500_000
    for payload in ({"history": ["1"], "k": huge}, {"history": [huge]}, {"user": huge}):
        response = client.post("/recommend", json=payload)
        assert response.status_code == 422
        assert len(response.content) < 1_000, response.text[:200]
        assert "x" * 40 in response.text and "x" * 41 not in response.text
    many = client.post("/recommend", json={"history": [1.5] * 2000})
    assert many.status_code == 422 and len(many.json()["detail"]) == 20


def test_a_body_over_the_limit_is_413_unread(recommender: Recommender) -> None:
    limit = 4096
    with TestClient(create_app(recommender, max_body_bytes=limit)) as small:
        body = b'{"history": ["' + b"1" * limit + b'"]}'
        response = small.post("/recommend", content=body, headers=JSON)
        assert response.status_code == 413
        assert response.json() == {"detail": f"request body larger than {limit} bytes"}

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield body[:1000]
            yield body[1000:]

        streamed = small.post("/recommend", content=chunks(), headers=JSON)
        assert streamed.status_code == 413 and len(streamed.content) < 100
        assert small.request("GET", "/health", content=body).status_code == 413
        fits = {"history": ["1"] * 300}
        assert small.post("/recommend", json=fits).status_code == 200


def test_k_above_the_catalogue_is_422_naming_k(small_recommender: Recommender) -> None:
    with TestClient(create_app(small_recommender)) as small:
        response = small.post("/recommend", json={"history": ["50"], "k": 50})
        assert "k" in _fields(response)
        assert "12 (the catalogue size)" in response.json()["detail"][0]["msg"]
        assert small.app.state.batcher.requests == 0  # rejected before the micro-batcher


def test_api_key(recommender: Recommender) -> None:
    key = "k" * 24
    with TestClient(create_app(recommender, api_key=key)) as guarded:
        payload = {"history": ["1"], "k": 3}
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": key + "x"}):
            response = guarded.post("/recommend", json=payload, headers=headers)
            assert response.status_code == 401
            assert response.json() == {"detail": "missing or wrong X-API-Key header"}
            assert guarded.get("/items/1", headers=headers).status_code == 401
        assert (
            guarded.post("/recommend", json=payload, headers={"X-API-Key": key}).status_code == 200
        )
        assert guarded.get("/items/1", headers={"X-API-Key": key}).status_code == 200
        assert guarded.get("/health").status_code == 200  # open for probes, by policy
        schema = guarded.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_openapi_schema_documents_the_limits(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/recommend", "/items/{item_id}", "/health"} <= set(schema["paths"])
    for name in ("HistoryRequest", "UserRequest"):
        request = schema["components"]["schemas"][name]["properties"]
        assert request["k"]["maximum"] == MAX_K and request["k"]["minimum"] == 1
    history = schema["components"]["schemas"]["HistoryRequest"]["properties"]["history"]
    assert history["maxItems"] == MAX_HISTORY
    assert history["items"]["anyOf"][0]["maxLength"] == MAX_ID_CHARS
