"""Rules of a tool definition (pure, no I/O): its argument schema, its HTTP endpoint and headers,
its host allowlist and the built-in tools. Each function returns every problem it finds, each with
`code`, `message` and `loc` (the path in the request body).

Secrets are never stored in clear: a sensitive header (Authorization, Proxy-Authorization,
X-Api-Key, Cookie, or any name containing token/secret/key/auth) must be `{"secret_ref": "<name>"}`,
a plain value that looks like a credential (`Bearer ...`, `Basic ...`) is refused under any header
name, and so are URLs carrying user info or literal values of credential-like query parameters.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,63}$")
KINDS = ("http", "builtin")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS = 1, 120_000, 10_000
MAX_ALLOWED_HOSTS = 50
MAX_HEADERS = 50
MAX_SCHEMA_DEPTH = 64  # path length; stored values nest at most 32 levels anyway

JSON_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}

# Built-in tools run inside the run executor; their argument schemas are the default `parameters`.
BUILTINS: dict[str, dict[str, Any]] = {
    "calculator": {
        "description": "Evaluates an arithmetic expression (+ - * / ** %, parentheses, decimals); no names "
        "or function calls.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "For example `(2 + 3) * 4.5`."}},
            "required": ["expression"],
        },
    },
    "json_extract": {
        "description": "Returns the value at a path (`items[0].name`) of a JSON document.",
        "parameters": {
            "type": "object",
            "properties": {
                "json": {"description": "The document: any JSON value, or a string holding JSON."},
                "path": {"type": "string", "description": "Dot and bracket path, e.g. `items[0].name`."},
            },
            "required": ["json", "path"],
        },
    },
    "current_time": {
        "description": "The current date and time in ISO 8601, in UTC or the given IANA time zone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA zone, e.g. `Europe/Paris`."}},
        },
    },
    "http_get_allowlisted": {
        "description": "GETs a URL whose host is in the tool's `allowed_hosts` and returns status and body.",
        "parameters": {
            "type": "object",
            "properties": {
                "url": {"type": "string", "format": "uri", "description": "http(s) URL to fetch."}
            },
            "required": ["url"],
        },
    },
}

SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie"})
_SENSITIVE_HEADER_PARTS = ("token", "secret", "key", "auth")
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade"})
_CREDENTIAL_VALUE = re.compile(r"^\s*(bearer|basic|token|digest)\s+\S", re.IGNORECASE)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
SECRET_REF = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/-]{0,127}$")
_SENSITIVE_PARAM_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "sig",
        "signature",
        "credential",
    }
)
_URL_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

Loc = list[str | int]


def _problem(code: str, message: str, loc: Loc, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "loc": loc, **extra}


# --- argument schema ------------------------------------------------------------------------------


def _is_schema(value: Any) -> bool:
    return isinstance(value, dict | bool)


def _subschema_problems(schema: Any, loc: Loc, out: list[dict[str, Any]]) -> None:
    """Structural check of one JSON Schema (the keywords a tool's arguments use)."""
    if isinstance(schema, bool) or len(loc) > MAX_SCHEMA_DEPTH:
        return  # too deep a schema is refused as a stored value (`too_deep`)
    if not isinstance(schema, dict):
        out.append(_problem("invalid_schema", "a schema must be an object (or true/false)", loc))
        return
    declared = schema.get("type")
    if declared is not None:
        types = declared if isinstance(declared, list) else [declared]
        if not types or any(t not in JSON_TYPES for t in types) or len(set(map(str, types))) != len(types):
            out.append(
                _problem(
                    "invalid_schema_type",
                    f"type {declared!r} must be one of {', '.join(JSON_TYPES)} (or a list of them)",
                    [*loc, "type"],
                )
            )
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            out.append(
                _problem("invalid_schema", "`properties` must be an object of schemas", [*loc, "properties"])
            )
            properties = None
        else:
            for name, sub in properties.items():
                _subschema_problems(sub, [*loc, "properties", name], out)
    required = schema.get("required")
    if required is not None:
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            out.append(
                _problem("invalid_schema", "`required` must be a list of property names", [*loc, "required"])
            )
        else:
            if len(set(required)) != len(required):
                out.append(_problem("invalid_schema", "`required` lists a name twice", [*loc, "required"]))
            for i, name in enumerate(required):
                if properties is not None and name not in properties:
                    out.append(
                        _problem(
                            "unknown_required_property",
                            f"required property {name!r} is not in `properties`",
                            [*loc, "required", i],
                        )
                    )
    items = schema.get("items")
    if items is not None:
        if isinstance(items, list):
            for i, sub in enumerate(items):
                _subschema_problems(sub, [*loc, "items", i], out)
        else:
            _subschema_problems(items, [*loc, "items"], out)
    for keyword in ("additionalProperties", "not", "contains", "propertyNames"):
        if keyword in schema:
            _subschema_problems(schema[keyword], [*loc, keyword], out)
    for keyword in ("anyOf", "oneOf", "allOf"):
        if keyword in schema:
            branches = schema[keyword]
            if not isinstance(branches, list) or not branches:
                out.append(
                    _problem(
                        "invalid_schema", f"`{keyword}` must be a non-empty list of schemas", [*loc, keyword]
                    )
                )
            else:
                for i, sub in enumerate(branches):
                    _subschema_problems(sub, [*loc, keyword, i], out)
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        out.append(_problem("invalid_schema", "`enum` must be a non-empty list", [*loc, "enum"]))
    for keyword in ("description", "title", "format", "pattern"):
        if keyword in schema and not isinstance(schema[keyword], str):
            out.append(_problem("invalid_schema", f"`{keyword}` must be a string", [*loc, keyword]))
    if isinstance(schema.get("pattern"), str):
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            out.append(
                _problem("invalid_schema", f"`pattern` is not a regular expression: {exc}", [*loc, "pattern"])
            )
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        value = schema.get(keyword)
        if keyword in schema and (isinstance(value, bool) or not isinstance(value, int | float)):
            out.append(_problem("invalid_schema", f"`{keyword}` must be a number", [*loc, keyword]))
    for keyword in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
        value = schema.get(keyword)
        if keyword in schema and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            out.append(
                _problem("invalid_schema", f"`{keyword}` must be a non-negative integer", [*loc, keyword])
            )


def _jsonschema_problems(schema: dict[str, Any], loc: Loc) -> list[dict[str, Any]]:
    """The `jsonschema` package's meta-schema check, when it is installed (it is optional)."""
    try:
        from jsonschema import exceptions, validators  # type: ignore[import-untyped]
    except ImportError:
        return []
    try:  # pragma: no cover - depends on the optional package
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:  # pragma: no cover
        return [_problem("invalid_schema", exc.message, [*loc, *exc.path])]
    return []  # pragma: no cover


def parameters_problems(parameters: Any, loc: Loc) -> list[dict[str, Any]]:
    """`parameters` must be a JSON Schema of an object: `type: object`, `properties` an object of
    schemas with known types, `required` a list of declared property names."""
    if not isinstance(parameters, dict):
        return [_problem("invalid_schema", "parameters must be a JSON Schema object", loc)]
    problems: list[dict[str, Any]] = []
    if parameters.get("type") != "object":
        problems.append(
            _problem("invalid_schema", "the arguments schema must have `type: object`", [*loc, "type"])
        )
    _subschema_problems(parameters, loc, problems)
    if not problems:
        problems.extend(_jsonschema_problems(parameters, loc))
    return problems


def declared_arguments(parameters: Mapping[str, Any]) -> set[str]:
    properties = parameters.get("properties")
    return set(properties) if isinstance(properties, dict) else set()


# --- hosts ----------------------------------------------------------------------------------------


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_hostname(host: str) -> bool:
    labels = host.split(".")
    return len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    ip = _ip(host)
    return str(ip) if ip is not None else host


def allowed_hosts_problems(hosts: Sequence[str], loc: Loc) -> list[dict[str, Any]]:
    """Entries are host names, `*.example.com` wildcards (subdomains only) or IP addresses."""
    problems: list[dict[str, Any]] = []
    if len(hosts) > MAX_ALLOWED_HOSTS:
        problems.append(_problem("too_many_hosts", f"at most {MAX_ALLOWED_HOSTS} allowed hosts", loc))
    for i, raw in enumerate(hosts):
        host = normalize_host(raw)
        ip = _ip(host)
        if ip is not None:
            if ip.is_unspecified or ip.is_multicast:
                problems.append(_problem("invalid_host", f"{raw!r} is not a host a tool can call", [*loc, i]))
            continue
        name = host[2:] if host.startswith("*.") else host
        if not _is_hostname(name) or (host.startswith("*.") and "." not in name):
            problems.append(
                _problem(
                    "invalid_host",
                    f"{raw!r} must be a host name (no scheme, port or path), `*.domain.tld` or an IP address",
                    [*loc, i],
                )
            )
    return problems


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Exact match, or a `*.domain` wildcard matching a subdomain. IP addresses (private ranges
    included) are allowed only when listed exactly: wildcards never match them."""
    host = normalize_host(host)
    entries = [normalize_host(a) for a in allowed]
    if host in entries:
        return True
    if _ip(host) is not None:
        return False
    return any(e.startswith("*.") and host.endswith(e[1:]) for e in entries)


def _private(host: str) -> bool:
    ip = _ip(host)
    return ip is not None and (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved)


# --- http endpoint --------------------------------------------------------------------------------


def _param_is_sensitive(name: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", words) if p]
    return any(p in _SENSITIVE_PARAM_WORDS or p.endswith(("key", "token", "secret")) for p in parts)


def url_template_problems(
    url_template: str, arguments: set[str], allowed_hosts: Sequence[str], loc: Loc
) -> list[dict[str, Any]]:
    """An http(s) URL whose host is literal and allowed, whose `{arg}` placeholders are declared
    arguments, and which carries no credentials (user info, literal `api_key=...` parameters)."""
    problems: list[dict[str, Any]] = []
    names = _URL_PLACEHOLDER.findall(url_template)
    stray = _URL_PLACEHOLDER.sub("", url_template)
    if "{" in stray or "}" in stray:
        problems.append(
            _problem(
                "malformed_placeholder",
                "placeholders are `{argument_name}`; other braces are not allowed",
                loc,
            )
        )
    for name in dict.fromkeys(names):
        if name not in arguments:
            problems.append(
                _problem(
                    "undeclared_argument",
                    f"placeholder {{{name}}} is not a property of `parameters`",
                    loc,
                    name=name,
                )
            )
    marked = _URL_PLACEHOLDER.sub("\x00", url_template)
    try:
        parts = urlsplit(marked)
    except ValueError as exc:
        return [*problems, _problem("invalid_url", f"not a URL: {exc}", loc)]
    if parts.scheme not in ("http", "https"):
        problems.append(_problem("invalid_url", "the URL must start with http:// or https://", loc))
        return problems
    if "\x00" in parts.netloc:
        problems.append(_problem("placeholder_in_host", "scheme, host and port must be literal", loc))
        return problems
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return [*problems, _problem("invalid_url", f"not a URL: {exc}", loc)]
    if "@" in parts.netloc:
        problems.append(
            _problem(
                "secret_in_url", "user info in the URL is a credential in clear; use a secret_ref header", loc
            )
        )
    host = parts.hostname or ""
    if not host:
        problems.append(_problem("invalid_url", "the URL has no host", loc))
        return problems
    if not host_allowed(host, allowed_hosts):
        why = " (a private or loopback address must be listed exactly)" if _private(host) else ""
        problems.append(
            _problem(
                "host_not_allowed",
                f"host {host!r} is not in `allowed_hosts`{why}",
                ["body", "allowed_hosts"],
                host=host,
            )
        )
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        literal = value.replace("\x00", "")
        if _param_is_sensitive(key) and literal and value != "\x00":
            problems.append(
                _problem(
                    "secret_in_url",
                    f"query parameter {key!r} holds a credential in clear; send it in a header with "
                    '`{"secret_ref": "<name>"}`',
                    loc,
                    parameter=key,
                )
            )
    return problems


def headers_problems(headers: Mapping[str, Any], loc: Loc) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    if len(headers) > MAX_HEADERS:
        problems.append(_problem("too_many_headers", f"at most {MAX_HEADERS} headers", loc))
    seen: set[str] = set()
    for name, value in headers.items():
        here: Loc = [*loc, name]
        lowered = name.lower()
        if not _HEADER_NAME.match(name):
            problems.append(
                _problem("invalid_header_name", f"header name must match {_HEADER_NAME.pattern}", here)
            )
            continue
        if lowered in seen:
            problems.append(_problem("duplicate_header", f"header {name!r} is given twice", here))
        seen.add(lowered)
        if lowered in _FORBIDDEN_HEADERS:
            problems.append(_problem("forbidden_header", f"header {name!r} is set by the HTTP client", here))
            continue
        if isinstance(value, Mapping):
            ref = value.get("secret_ref")
            if set(value) != {"secret_ref"} or not isinstance(ref, str) or not SECRET_REF.match(ref):
                problems.append(
                    _problem(
                        "invalid_secret_ref",
                        'a secret header is {"secret_ref": "<name>"} with a name matching '
                        + SECRET_REF.pattern,
                        here,
                    )
                )
            continue
        if not isinstance(value, str):
            problems.append(
                _problem("invalid_header_value", "a header value is a string or a secret_ref", here)
            )
            continue
        if "\r" in value or "\n" in value or len(value) > 4096:
            problems.append(
                _problem(
                    "invalid_header_value", "header values hold no line breaks and at most 4096 chars", here
                )
            )
        sensitive = lowered in SENSITIVE_HEADERS or any(part in lowered for part in _SENSITIVE_HEADER_PARTS)
        if sensitive or _CREDENTIAL_VALUE.match(value):
            problems.append(
                _problem(
                    "secret_in_header",
                    f"header {name!r} would store a credential in clear; give "
                    '`{"secret_ref": "<secret name>"}` instead',
                    here,
                )
            )
    return problems


# --- the whole definition -------------------------------------------------------------------------


def definition_problems(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every problem of a complete tool definition (the fields of `ToolDefinition`)."""
    problems: list[dict[str, Any]] = []
    name = definition.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(_problem("invalid_name", f"name must match {NAME.pattern}", ["body", "name"]))
    kind = definition.get("kind")
    parameters = definition.get("parameters")
    problems.extend(parameters_problems(parameters, ["body", "parameters"]))
    arguments = declared_arguments(parameters) if isinstance(parameters, dict) else set()
    allowed = list(definition.get("allowed_hosts") or [])
    problems.extend(allowed_hosts_problems(allowed, ["body", "allowed_hosts"]))
    timeout = definition.get("timeout_ms")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not MIN_TIMEOUT_MS <= timeout <= MAX_TIMEOUT_MS
    ):
        problems.append(
            _problem(
                "invalid_timeout", f"timeout_ms is {MIN_TIMEOUT_MS}..{MAX_TIMEOUT_MS}", ["body", "timeout_ms"]
            )
        )
    if kind == "http":
        if definition.get("method") not in METHODS:
            problems.append(
                _problem(
                    "invalid_method", f"http tools need a method: {', '.join(METHODS)}", ["body", "method"]
                )
            )
        url = definition.get("url_template")
        if not isinstance(url, str) or not url:
            problems.append(
                _problem("missing_url", "http tools need a url_template", ["body", "url_template"])
            )
        else:
            problems.extend(url_template_problems(url, arguments, allowed, ["body", "url_template"]))
        problems.extend(headers_problems(definition.get("headers") or {}, ["body", "headers"]))
        if definition.get("builtin") is not None:
            problems.append(
                _problem("not_for_kind", "`builtin` is only for builtin tools", ["body", "builtin"])
            )
    elif kind == "builtin":
        builtin = definition.get("builtin")
        if builtin not in BUILTINS:
            problems.append(
                _problem(
                    "unknown_builtin",
                    f"builtin must be one of {', '.join(BUILTINS)}",
                    ["body", "builtin"],
                    allowed=list(BUILTINS),
                )
            )
        else:
            needed = BUILTINS[builtin]["parameters"].get("required", [])
            for arg in needed:
                if arg not in arguments:
                    problems.append(
                        _problem(
                            "builtin_argument_missing",
                            f"the {builtin} builtin needs the argument {arg!r} in `parameters`",
                            ["body", "parameters", "properties"],
                        )
                    )
            if builtin == "http_get_allowlisted" and not allowed:
                problems.append(
                    _problem(
                        "missing_allowed_hosts",
                        "http_get_allowlisted may only call hosts listed in `allowed_hosts`",
                        ["body", "allowed_hosts"],
                    )
                )
        for field in ("method", "url_template"):
            if definition.get(field) is not None:
                problems.append(
                    _problem("not_for_kind", f"`{field}` is only for http tools", ["body", field])
                )
        if definition.get("headers"):
            problems.append(
                _problem("not_for_kind", "`headers` are only for http tools", ["body", "headers"])
            )
    else:
        problems.append(_problem("invalid_kind", f"kind must be one of {', '.join(KINDS)}", ["body", "kind"]))
    return problems
