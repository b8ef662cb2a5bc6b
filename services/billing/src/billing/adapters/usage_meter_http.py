"""The usage-meter's monthly read route over internal HTTP (shape agreed in its API document)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from ailab_runtime.internal import INTERNAL_TOKEN_HEADER, PRINCIPAL_HEADER, ROLE_HEADER


class UsageMeterUnavailable(Exception):
    pass


class UsageMeterHttp:
    def __init__(self, base_url: str, internal_token: str, timeout_s: float = 10.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            headers={
                INTERNAL_TOKEN_HEADER: internal_token,
                PRINCIPAL_HEADER: "system",
                ROLE_HEADER: "system",
            },
        )

    async def monthly_totals(self, tenant_id: str, month: str) -> dict[str, Decimal]:
        """`GET /v1/tenants/{t}/usage/monthly?from=M&to=M`: quantity per meter for that month."""
        try:
            response = await self._client.get(
                f"/v1/tenants/{tenant_id}/usage/monthly", params={"from": month, "to": month}
            )
        except httpx.HTTPError as exc:
            raise UsageMeterUnavailable(f"usage-meter unreachable: {exc}") from exc
        if response.status_code != 200:
            raise UsageMeterUnavailable(f"usage-meter answered {response.status_code}: {response.text[:200]}")
        totals: dict[str, Decimal] = {}
        for item in response.json().get("items", []):
            if item.get("month") != month:
                continue
            for meter, total in (item.get("meters") or {}).items():
                totals[meter] = totals.get(meter, Decimal(0)) + Decimal(str(total["quantity"]))
        return totals

    async def aclose(self) -> None:
        await self._client.aclose()
