"""Stripe through its official SDK (async, httpx). Every write carries an idempotency key, so a
retried request (after a timeout, a crash, a redelivered Kafka message) never creates a second
customer, subscription or meter event; meter events also carry their deterministic `identifier`,
which Stripe deduplicates on for 24 hours and more."""

from __future__ import annotations

from typing import Any

import stripe


class StripeFailure(Exception):
    """Stripe refused or could not be reached; `message` is safe to show."""


class StripeApi:
    def __init__(
        self, api_key: str, api_base: str, timeout_s: float = 10.0, network_retries: int = 2
    ) -> None:
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            http_client=stripe.HTTPXClient(timeout=timeout_s),
            max_network_retries=network_retries,
        )

    async def _call(self, fn: Any, params: dict[str, Any], key: str | None) -> Any:
        options: dict[str, Any] = {"idempotency_key": key} if key else {}
        try:
            return await fn(params, options)
        except stripe.StripeError as exc:
            raise StripeFailure(f"stripe: {type(exc).__name__}: {exc.user_message or exc}") from exc

    async def create_customer(self, tenant_id: str, name: str, key: str) -> str:
        customer = await self._call(
            self._client.v1.customers.create_async,
            {"name": name, "metadata": {"tenant_id": tenant_id}},
            key,
        )
        return str(customer.id)

    async def create_subscription(
        self, tenant_id: str, customer_id: str, plan: str, price_ids: list[str], key: str
    ) -> dict[str, Any]:
        sub = await self._call(
            self._client.v1.subscriptions.create_async,
            {
                "customer": customer_id,
                "items": [{"price": price} for price in price_ids],
                "metadata": {"tenant_id": tenant_id, "plan": plan},
            },
            key,
        )
        return {"id": str(sub.id), "status": str(sub.status)}

    async def cancel_subscription(self, subscription_id: str, key: str) -> None:
        await self._call(
            lambda params, options: self._client.v1.subscriptions.cancel_async(
                subscription_id, params, options
            ),
            {},
            key,
        )

    async def send_meter_event(
        self, event_name: str, customer_id: str, value: str, identifier: str, timestamp: int
    ) -> dict[str, Any]:
        event = await self._call(
            self._client.v1.billing.meter_events.create_async,
            {
                "event_name": event_name,
                "payload": {"stripe_customer_id": customer_id, "value": value},
                "identifier": identifier,
                "timestamp": timestamp,
            },
            identifier,
        )
        return {"identifier": str(event.identifier), "event_name": str(event.event_name)}
