"""The agent-registry's internal HTTP API as experiment ports: dataset examples and stored judge
prompts. Calls carry the service credential (`X-Internal-Token`) and act as principal `system`.

Examples: `GET /v1/tenants/{t}/datasets/{id}/examples?limit=200&cursor=...` pages through the
dataset's current file (`{"items": [{"index", "upload_id", "data"}], "next_cursor"}`). The run is
pinned to one file (`upload_id`, immutable once uploaded), so a page from another file or a 409
`dataset_file_replaced` (the file changed under the cursor) mean the dataset changed
(`dataset_changed`; a dataset without its file yields no rows, which the runner reports the same
way); 404 is `dataset_not_found`; network errors and 5xx are retried with
backoff and then give `dataset_unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from ailab_runtime.internal import INTERNAL_TOKEN_HEADER, PRINCIPAL_HEADER, ROLE_HEADER

from .ports import DATASET_CHANGED, DATASET_NOT_FOUND, DATASET_UNAVAILABLE, ExperimentRunError

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # the registry's maximum


class _RegistryClient:
    def __init__(
        self,
        base_url: str,
        internal_token: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 30.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._headers = {
            INTERNAL_TOKEN_HEADER: internal_token,
            PRINCIPAL_HEADER: "system",
            ROLE_HEADER: "system",
        }
        self._attempts = attempts
        self._backoff = backoff_s

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def _get(self, path: str, params: dict[str, Any], what: str) -> httpx.Response:
        """The response of GET `path`; retries transport errors, 429 and 5xx."""
        last = ""
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._client.get(path, params=params, headers=self._headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                last = f"HTTP {response.status_code}"
            if attempt < self._attempts:
                await asyncio.sleep(min(self._backoff * 2 ** (attempt - 1), 10.0))
        raise ExperimentRunError(DATASET_UNAVAILABLE, f"{what}: the registry did not answer ({last})")


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except Exception:  # noqa: BLE001 - any body without the shared error shape
        return f"http_{response.status_code}"


class RegistryExampleSource(_RegistryClient):
    """`ExampleSource` over the registry's datasets API."""

    async def iterate(
        self, tenant_id: str, dataset_id: str, upload_id: str
    ) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        path = f"/v1/tenants/{quote(tenant_id, safe='')}/datasets/{quote(dataset_id, safe='')}/examples"
        what = f"dataset {dataset_id}"
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            response = await self._get(path, params, what)
            if response.status_code == 404:
                raise ExperimentRunError(DATASET_NOT_FOUND, f"{what} does not exist (any more)")
            if response.status_code == 409:
                raise ExperimentRunError(
                    DATASET_CHANGED, f"{what} changed while it was read ({_error_code(response)})"
                )
            if response.status_code != 200:
                raise ExperimentRunError(
                    DATASET_UNAVAILABLE, f"{what}: HTTP {response.status_code} {_error_code(response)}"
                )
            page = response.json()
            items = page.get("items") or []
            for item in items:
                if item.get("upload_id") != upload_id:
                    raise ExperimentRunError(
                        DATASET_CHANGED,
                        f"{what} now holds file {item.get('upload_id')}, the run is pinned to {upload_id}",
                    )
                yield int(item["index"]), dict(item["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return


class RegistryJudgePrompts(_RegistryClient):
    """`JudgePrompts` over the registry's prompts API (`GET .../prompts/{id}/versions/{version}`)."""

    async def messages(self, tenant_id: str, prompt_id: str, version: int) -> list[dict[str, Any]]:
        path = (
            f"/v1/tenants/{quote(tenant_id, safe='')}/prompts/{quote(prompt_id, safe='')}/versions/{version}"
        )
        what = f"judge prompt {prompt_id} v{version}"
        try:
            response = await self._get(path, {}, what)
        except ExperimentRunError as exc:
            raise ExperimentRunError("judge_prompt_unavailable", exc.message) from None
        if response.status_code != 200:
            raise ExperimentRunError(
                "judge_prompt_unavailable", f"{what}: HTTP {response.status_code} {_error_code(response)}"
            )
        body = response.json()
        if body.get("template") is not None:
            return [{"role": "user", "content": str(body["template"])}]
        return [
            {"role": str(m.get("role", "user")), "content": m.get("content")}
            for m in body.get("messages") or []
        ]
