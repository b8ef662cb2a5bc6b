"""The bulk route over HTTP (in process, a fake publisher): the 202 body is what BulkIngestResponse
gives, Kafka's failure is 503 `kafka_unavailable`, and one record is produced per request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ailab_runtime.service import create_app
from usage_meter.bootstrap import SPEC
from usage_meter.config import Settings
from usage_meter.entrypoints.schemas import BulkIngestResponse
from usage_meter.wiring import UsageMeterServices

pytestmark = pytest.mark.unit


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.messages: list[tuple[bytes, bytes]] = []

    async def publish_all(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        if self.fail:
            raise TimeoutError("no acknowledgement")
        self.messages.extend(messages)


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, Sink]]:
    settings = Settings()
    app = create_app(SPEC, settings)  # no lifespan: nothing connects
    sink = Sink()
    services: Any = {"views": None, "ingestor": None, "consumer": None, "quotas": None, "closer": None}
    app.state.runtime.extras["usage"] = UsageMeterServices(
        rules=settings.acceptance_rules(), publisher=sink, publisher_errors=TimeoutError, extra={}, **services
    )
    headers = {"X-Internal-Token": settings.internal_token, "X-Principal-Id": "usr_1"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meter", headers=headers) as client:
        yield client, sink


async def test_the_202_body_is_the_response_model_s(api: tuple[httpx.AsyncClient, Sink]) -> None:
    client, sink = api
    now = datetime.now(UTC).isoformat()
    events = [
        {"event_id": "a", "meter": "tokens_in", "quantity": "10", "timestamp": now},
        {"event_id": "b\u00e9\u2603", "meter": "bogus", "quantity": "1"},
        {"meter": "requests", "quantity": "1", "timestamp": now},
        {"event_id": 7, "meter": "requests", "quantity": "1"},
    ]
    response = await client.post(
        "/v1/tenants/acme/usage/events", json={"events": events}, headers={"X-Request-ID": "req-1"}
    )
    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert response.content == BulkIngestResponse.model_validate(body).model_dump_json().encode()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [(r["index"], r["event_id"], r["status"], r["reason"]) for r in body["results"]] == [
        (0, "a", "accepted", None),
        (1, "b\u00e9\u2603", "rejected", "unknown_meter"),
        (2, None, "accepted", None),
        (3, None, "rejected", "invalid_event"),
    ]
    ((key, value),) = sink.messages
    envelope = json.loads(value)
    assert key == b"acme" and envelope["stream_id"] == "usage-bulk:acme:req-1"
    assert envelope["correlation_id"] == envelope["causation_id"] == "req-1"
    assert [e["event_id"] for e in envelope["payload"]["events"]] == [
        body["results"][0]["usage_event_id"],
        body["results"][2]["usage_event_id"],
    ]


async def test_kafka_not_acknowledging_is_503_kafka_unavailable(api: tuple[httpx.AsyncClient, Sink]) -> None:
    client, sink = api
    sink.fail = True
    response = await client.post(
        "/v1/tenants/acme/usage/events", json={"events": [{"meter": "requests", "quantity": "1"}]}
    )
    assert response.status_code == 503 and response.json()["error"]["code"] == "kafka_unavailable"


async def test_more_than_1000_events_is_422(api: tuple[httpx.AsyncClient, Sink]) -> None:
    client, sink = api
    response = await client.post(
        "/v1/tenants/acme/usage/events", json={"events": [{"meter": "requests", "quantity": "1"}] * 1001}
    )
    assert response.status_code == 422 and sink.messages == []


async def test_a_body_that_is_not_json_is_422_about_the_body(api: tuple[httpx.AsyncClient, Sink]) -> None:
    client, sink = api
    response = await client.post(
        "/v1/tenants/acme/usage/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    error = response.json()["error"]
    assert response.status_code == 422 and error["code"] == "validation_error" and sink.messages == []
    assert error["details"][0]["loc"][0] == "body" and error["details"][0]["type"] == "json_invalid"


async def test_the_request_body_is_documented(api: tuple[httpx.AsyncClient, Sink]) -> None:
    client, _ = api
    doc = (await client.get("/openapi.json")).json()
    body = doc["paths"]["/v1/tenants/{tenant_id}/usage/events"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] is True and schema["required"] == ["events"]
    assert schema["properties"]["events"]["maxItems"] == 1000


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_json_by_its_content_type_is_422(
    api: tuple[httpx.AsyncClient, Sink], content_type: str | None
) -> None:
    client, sink = api
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps({"events": [{"meter": "requests", "quantity": "1"}]}).encode()
    request = client.build_request("POST", "/v1/tenants/acme/usage/events", content=body, headers=headers)
    assert request.headers.get("content-type") == content_type  # httpx adds none for bytes
    response = await client.send(request)
    assert response.status_code == 422 and response.json()["error"]["details"][0]["loc"] == ["body"]
    assert sink.messages == []
