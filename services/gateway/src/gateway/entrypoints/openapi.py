"""The gateway's OpenAPI document, with the forwarded routes' schemas merged in from the service
that serves them, so the published document matches what each route accepts and returns."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .proxy import FORWARDED, routes_of

log = logging.getLogger(__name__)


def merge_upstream(
    doc: dict[str, Any], upstream: dict[str, Any], routes: list[tuple[str, str]]
) -> dict[str, Any]:
    """Copy each forwarded operation (parameters, body, responses) and the schemas they use."""
    for method, path in routes:
        op = upstream.get("paths", {}).get(path, {}).get(method.lower())
        ours = doc.get("paths", {}).get(path, {}).get(method.lower())
        if op is None or ours is None:
            continue
        ours["parameters"] = op.get("parameters", [])
        if "requestBody" in op:
            ours["requestBody"] = op["requestBody"]
        ours["responses"] = {**ours.get("responses", {}), **op.get("responses", {})}
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in upstream.get("components", {}).get("schemas", {}).items():
        components.setdefault(name, schema)
    return doc


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        doc.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT or ailab_k_ API key",
        }
        doc["security"] = [{"bearer": []}]
        complete = True
        for service in [name for name, _, _ in FORWARDED]:
            client = app.state.upstreams[service].client
            try:
                url = str(client.base_url).rstrip("/") + "/openapi.json"
                upstream = httpx.get(url, timeout=3.0).json()
            except (httpx.HTTPError, ValueError):
                log.warning(f"{service} OpenAPI not reachable; its routes are documented without schemas")
                complete = False
                continue
            doc = merge_upstream(doc, upstream, routes_of(service))
        if complete:
            app.openapi_schema = doc  # cached once every service answered; otherwise retried next time
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
