"""Tool execution: the built-ins (`calculator`, `json_extract`, `current_time`,
`http_get_allowlisted`) and `http` tools (method, `url_template` with `{arg}` placeholders, headers
whose secrets are `{"secret_ref": ...}` resolved per tenant through the SecretResolver, timeout).

Every outbound request's host is checked against the tool's `allowed_hosts` before any connection
is opened (exact names, `*.domain` wildcards for subdomains, IP addresses only when listed exactly;
an empty list allows nothing), and redirects are never followed. Secret values never appear in
results, errors or logs.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from .calculator import CalculatorError, as_json_number, evaluate, exact_text
from .template import MissingPath, TemplateError, lookup

BUILTIN_NAMES = ("calculator", "json_extract", "current_time", "http_get_allowlisted")
MAX_RESPONSE_BYTES = 1_000_000
_URL_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

BUILTIN_PARAMETERS: dict[str, dict[str, Any]] = {
    "calculator": {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "For example `(2 + 3) * 4.5`."}},
        "required": ["expression"],
    },
    "json_extract": {
        "type": "object",
        "properties": {
            "json": {"description": "The document: any JSON value, or a string holding JSON."},
            "path": {"type": "string", "description": "Dot and bracket path, e.g. `items[0].name`."},
        },
        "required": ["json", "path"],
    },
    "current_time": {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA zone, e.g. `Europe/Paris`."}},
    },
    "http_get_allowlisted": {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "An http(s) URL on an allowed host."}},
        "required": ["url"],
    },
}


class SecretResolver(Protocol):
    async def resolve(self, tenant_id: str | None, secret_ref: str) -> str: ...


class ToolError(Exception):
    """A tool call failed; `code` is stable (`tool_host_not_allowed`, `tool_timeout`, ...)."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the executor runs it (from the registry's tool definition, or a bare built-in)."""

    name: str
    kind: str  # "http" | "builtin"
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    description: str | None = None
    tool_id: str | None = None
    method: str | None = None
    url_template: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    builtin: str | None = None
    timeout_ms: int = 10_000
    allowed_hosts: Sequence[str] = ()
    status: str = "active"

    @classmethod
    def for_builtin(cls, name: str) -> ToolSpec:
        return cls(name=name, kind="builtin", builtin=name, parameters=BUILTIN_PARAMETERS[name])

    def provider_spec(self) -> dict[str, Any]:
        """The function spec offered to a model."""
        spec: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            spec["description"] = self.description
        return spec


# --- hosts -------------------------------------------------------------------------------------------


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    ip = _ip(host)
    return str(ip) if ip is not None else host


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Exact match, or a `*.domain` entry matching a subdomain; IP addresses only when listed exactly."""
    host = normalize_host(host)
    entries = [normalize_host(a) for a in allowed]
    if host in entries:
        return True
    if _ip(host) is not None:
        return False
    return any(e.startswith("*.") and host.endswith(e[1:]) for e in entries)


def check_url(url: str, allowed: Sequence[str]) -> str:
    """The URL's host, once it is an http(s) URL on an allowed host; raises ToolError otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ToolError("tool_invalid_url", f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ToolError("tool_invalid_url", "only http:// and https:// URLs can be called")
    if "@" in parts.netloc:
        raise ToolError("tool_invalid_url", "URLs with user info are refused")
    host = parts.hostname or ""
    if not host:
        raise ToolError("tool_invalid_url", "the URL has no host")
    if not host_allowed(host, allowed):
        raise ToolError(
            "tool_host_not_allowed",
            f"host {host!r} is not in the tool's allowed_hosts {list(allowed)!r}; no request was sent",
            {"host": host, "allowed_hosts": list(allowed)},
        )
    return host


# --- built-ins -------------------------------------------------------------------------------------


def _calculator(arguments: Mapping[str, Any]) -> dict[str, Any]:
    expression = arguments.get("expression")
    if not isinstance(expression, str):
        raise ToolError("tool_invalid_arguments", "calculator needs `expression` (a string)")
    try:
        value = evaluate(expression)
    except CalculatorError as exc:
        raise ToolError("calculator_error", str(exc), {"expression": expression[:200]}) from None
    return {"expression": expression, "result": as_json_number(value), "exact": exact_text(value)}


def _json_extract(arguments: Mapping[str, Any]) -> Any:
    document, path = arguments.get("json"), arguments.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ToolError("tool_invalid_arguments", "json_extract needs `path` (e.g. `items[0].name`)")
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            raise ToolError("tool_invalid_arguments", "`json` is a string that does not hold JSON") from None
    try:
        return {"value": lookup({"doc": document}, "doc" + ("" if path.startswith("[") else ".") + path)}
    except MissingPath:
        raise ToolError("json_path_not_found", f"no value at `{path}`", {"path": path}) from None
    except TemplateError as exc:
        raise ToolError("tool_invalid_arguments", str(exc)) from None


def _current_time(arguments: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    zone_name = arguments.get("timezone") or "UTC"
    if not isinstance(zone_name, str):
        raise ToolError("tool_invalid_arguments", "`timezone` must be an IANA zone name")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError("tool_invalid_arguments", f"unknown time zone {zone_name!r}") from None
    local = now.astimezone(zone)
    return {"iso": local.isoformat(), "timezone": zone_name, "unix": int(now.timestamp())}


# --- the runner ------------------------------------------------------------------------------------


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


class ToolRunner:
    """Runs tools for the flow engine. One pooled HTTP client; secrets resolved per call."""

    def __init__(
        self,
        secrets: SecretResolver,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._secrets = secrets
        self._client = httpx.AsyncClient(follow_redirects=False, transport=transport)
        self._max = max_response_bytes

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, tenant_id: str, tool: ToolSpec, arguments: Mapping[str, Any]) -> Any:
        if not isinstance(arguments, Mapping):
            raise ToolError("tool_invalid_arguments", "tool arguments must be a JSON object")
        if tool.status != "active":
            raise ToolError("tool_unavailable", f"tool {tool.name!r} is {tool.status}")
        if tool.kind == "builtin":
            name = tool.builtin or tool.name
            if name == "calculator":
                return _calculator(arguments)
            if name == "json_extract":
                return _json_extract(arguments)
            if name == "current_time":
                return _current_time(arguments, datetime.now(UTC))
            if name == "http_get_allowlisted":
                url = arguments.get("url")
                if not isinstance(url, str):
                    raise ToolError("tool_invalid_arguments", "http_get_allowlisted needs `url` (a string)")
                return await self._request(tenant_id, tool, "GET", url, {}, None)
            raise ToolError("tool_not_found", f"unknown built-in tool {name!r}")
        if tool.kind == "http":
            url, rest = self._url(tool, arguments)
            method = (tool.method or "GET").upper()
            body = dict(rest) if method in ("POST", "PUT", "PATCH") else None
            return await self._request(tenant_id, tool, method, url, tool.headers, body)
        raise ToolError("tool_not_found", f"tool {tool.name!r} has unknown kind {tool.kind!r}")

    def _url(self, tool: ToolSpec, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        template = tool.url_template or ""
        used: set[str] = set()

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in arguments or arguments[name] is None:
                raise ToolError(
                    "tool_invalid_arguments", f"argument {name!r} is required by the URL", {"argument": name}
                )
            used.add(name)
            value = arguments[name]
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            return quote(text, safe="")

        url = _URL_PLACEHOLDER.sub(fill, template)
        return url, {k: v for k, v in arguments.items() if k not in used}

    async def _headers(self, tenant_id: str, headers: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
        out: dict[str, str] = {}
        secrets: list[str] = []
        for name, value in headers.items():
            if isinstance(value, Mapping) and "secret_ref" in value:
                ref = str(value["secret_ref"])
                try:
                    resolved = await self._secrets.resolve(tenant_id, ref)
                except Exception:  # noqa: BLE001 - the store's text may hold secrets: say only which ref
                    raise ToolError(
                        "tool_secret_missing", f"no secret {ref!r} for header {name!r}", {"secret_ref": ref}
                    ) from None
                out[name] = resolved
                secrets.append(resolved)
            else:
                out[name] = str(value)
        return out, secrets

    async def _request(
        self,
        tenant_id: str,
        tool: ToolSpec,
        method: str,
        url: str,
        headers: Mapping[str, Any],
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        check_url(url, tool.allowed_hosts)  # before secrets are resolved or any connection is opened
        resolved, secrets = await self._headers(tenant_id, headers)
        timeout = max(tool.timeout_ms, 1) / 1000
        try:
            request = self._client.build_request(
                method,
                url,
                headers=resolved,
                content=json.dumps(body).encode() if body is not None else None,
                timeout=httpx.Timeout(timeout),
            )
            if body is not None:
                request.headers.setdefault("content-type", "application/json")
            response = await self._client.send(request, stream=True)
            try:
                data, truncated = await self._read(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ToolError("tool_timeout", f"tool {tool.name!r}: no answer within {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise ToolError(
                "tool_unavailable", _scrub(f"tool {tool.name!r}: {type(exc).__name__}: {exc}", secrets)
            ) from None
        parsed = self._decode(data, response.headers.get("content-type", ""), truncated)
        result = {"status": response.status_code, "body": parsed, "truncated": truncated}
        if response.status_code >= 400:
            raise ToolError(
                "tool_http_error",
                f"tool {tool.name!r}: HTTP {response.status_code}",
                {
                    "status": response.status_code,
                    "body": _scrub(json.dumps(parsed, default=str)[:500], secrets),
                },
            )
        return result

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max:
                return b"".join(chunks)[: self._max], True
        return b"".join(chunks), False

    @staticmethod
    def _decode(data: bytes, content_type: str, truncated: bool) -> Any:
        text = data.decode("utf-8", "replace")
        if "json" in content_type.lower() and not truncated:
            try:
                return json.loads(text)
            except ValueError:
                return text
        return text
