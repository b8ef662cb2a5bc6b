"""The registry's internal HTTP API as experiment ports (in-process transport): paging through a
dataset's examples, the pinned file, errors, retries, and stored judge prompts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from run_executor.experiments.ports import ExperimentRunError
from run_executor.experiments.registry_http import RegistryExampleSource, RegistryJudgePrompts

pytestmark = pytest.mark.unit

TOKEN = "secret-token"


def registry(
    count: int, upload_id: str = "upl_1", *, switch_after: int | None = None, fail_first: int = 0
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """The registry's `/examples` route: pages in its format, cursor = last index returned."""
    seen: list[httpx.Request] = []
    failures = {"left": fail_first}

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("X-Internal-Token") != TOKEN:
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no"}})
        if failures["left"]:
            failures["left"] -= 1
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy"}})
        if not request.url.path.startswith("/v1/tenants/t1/datasets/dst_1/"):
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no dataset"}})
        limit = int(request.url.params["limit"])
        cursor = request.url.params.get("cursor")
        start = int(cursor) + 1 if cursor else 0
        stop = min(start + limit, count)
        current = upload_id if switch_after is None or start < switch_after else "upl_2"
        items = [{"index": i, "upload_id": current, "data": {"i": i}} for i in range(start, stop)]
        return httpx.Response(
            200, json={"items": items, "next_cursor": str(stop - 1) if stop < count else None}
        )

    return httpx.MockTransport(handle), seen


def source(transport: httpx.MockTransport, **kwargs: Any) -> RegistryExampleSource:
    client = httpx.AsyncClient(transport=transport, base_url="http://registry")
    return RegistryExampleSource("http://registry", TOKEN, client=client, backoff_s=0.001, **kwargs)


async def test_pages_through_every_example_with_the_internal_token() -> None:
    transport, seen = registry(450)
    rows = [row async for row in source(transport).iterate("t1", "dst_1", "upl_1")]
    assert [i for i, _ in rows] == list(range(450))
    assert rows[7] == (7, {"i": 7})
    assert len(seen) == 3  # 200 + 200 + 50
    assert seen[0].url.params["limit"] == "200" and "cursor" not in seen[0].url.params
    assert seen[1].url.params["cursor"] == "199"


async def test_a_page_of_another_file_is_dataset_changed() -> None:
    transport, _ = registry(450, switch_after=200)
    rows: list[int] = []
    with pytest.raises(ExperimentRunError) as err:
        async for i, _ in source(transport).iterate("t1", "dst_1", "upl_1"):
            rows.append(i)
    assert err.value.code == "dataset_changed" and "upl_2" in err.value.message
    assert rows == list(range(200))


async def test_missing_dataset_replaced_cursor_and_outage() -> None:
    transport, _ = registry(10)
    with pytest.raises(ExperimentRunError) as err:
        [row async for row in source(transport).iterate("t1", "dst_gone", "upl_1")]
    assert err.value.code == "dataset_not_found"

    replaced = httpx.MockTransport(
        lambda r: httpx.Response(409, json={"error": {"code": "dataset_file_replaced", "message": "x"}})
    )
    with pytest.raises(ExperimentRunError) as err:
        [row async for row in source(replaced).iterate("t1", "dst_1", "upl_1")]
    assert err.value.code == "dataset_changed" and "dataset_file_replaced" in err.value.message

    down = httpx.MockTransport(lambda r: httpx.Response(502))
    with pytest.raises(ExperimentRunError) as err:
        [row async for row in source(down, attempts=3).iterate("t1", "dst_1", "upl_1")]
    assert err.value.code == "dataset_unavailable" and "HTTP 502" in err.value.message


async def test_transient_errors_are_retried() -> None:
    transport, seen = registry(5, fail_first=2)
    rows = [row async for row in source(transport).iterate("t1", "dst_1", "upl_1")]
    assert len(rows) == 5 and len(seen) == 3


async def test_stored_judge_prompts_text_and_chat() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/prompts/pmt_text/versions/1"):
            return httpx.Response(200, json={"template": "Grade {{output}}", "messages": None})
        if request.url.path.endswith("/prompts/pmt_chat/versions/2"):
            messages = [{"role": "system", "content": "Judge"}, {"role": "user", "content": "{{output}}"}]
            return httpx.Response(200, json={"template": None, "messages": messages})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://registry")
    prompts = RegistryJudgePrompts("http://registry", TOKEN, client=client)
    assert await prompts.messages("t1", "pmt_text", 1) == [{"role": "user", "content": "Grade {{output}}"}]
    assert (await prompts.messages("t1", "pmt_chat", 2))[0] == {"role": "system", "content": "Judge"}
    with pytest.raises(ExperimentRunError) as err:
        await prompts.messages("t1", "pmt_none", 1)
    assert err.value.code == "judge_prompt_unavailable"
