"""An API fuzz run against the app's own OpenAPI schema (schemathesis), on the real server.

Bounded and deterministic: a fixed number of examples per operation and generation mode
(schema-valid and schema-invalid requests), derandomized, with no example database, so it
takes a few seconds and fails the same way every time.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from hymoerec.recommend import Recommender
from hymoerec.serving.server import ServeOptions
from tests.serving.conftest import free_port, live_server

EXAMPLES = 25  # per operation and generation mode: about 5 s in all


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_to_its_schema(small_recommender: Recommender, mode: GenerationMode) -> None:
    """No 5xx, every status and body as documented, valid input accepted, invalid rejected."""
    with live_server(small_recommender, ServeOptions(port=free_port())) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 3
        with requests.Session() as session:
            for operation in operations:
                if mode is GenerationMode.NEGATIVE and operation.path == "/health":
                    continue  # no input to get wrong

                @given(operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                )
                def check(case: schemathesis.Case) -> None:
                    case.call_and_validate(base_url=url, session=session)

                check()
