"""The HTTP API through FastAPI's test client, on a tiny model trained on ML-100K."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from hymoerec.recommend import Recommender
from hymoerec.serving.app import MAX_HISTORY, MAX_K, create_app


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


def test_history_and_user_are_exclusive(client: TestClient) -> None:
    for payload in ({"history": ["1"], "user": "1"}, {"k": 3}):
        response = client.post("/recommend", json=payload)
        assert response.status_code == 422
        assert "exactly one of 'history' and 'user'" in response.text


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/recommend", content=b'{"history": [1, 2', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_openapi_schema_documents_the_limits(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/recommend", "/items/{item_id}", "/health"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["RecommendRequest"]["properties"]
    assert request["k"]["maximum"] == MAX_K and request["k"]["minimum"] == 1
    assert request["history"]["anyOf"][0]["maxItems"] == MAX_HISTORY
