"""Rules of tool definitions: argument schemas, URL templates, headers, hosts and builtins."""

from __future__ import annotations

from typing import Any

import pytest

from agent_registry.tools.validation import (
    BUILTINS,
    allowed_hosts_problems,
    definition_problems,
    headers_problems,
    host_allowed,
    parameters_problems,
    url_template_problems,
)

pytestmark = pytest.mark.unit

LOC: list[str | int] = ["body", "x"]


def codes(problems: list[dict[str, Any]]) -> list[str]:
    return [p["code"] for p in problems]


def http_tool(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "weather",
        "description": None,
        "kind": "http",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "method": "GET",
        "url_template": "https://api.example.com/v1/weather/{city}",
        "headers": {"Accept": "application/json"},
        "builtin": None,
        "timeout_ms": 10_000,
        "allowed_hosts": ["api.example.com"],
        "tags": [],
        "metadata": {},
        "status": "active",
        **overrides,
    }


# --- parameters -----------------------------------------------------------------------------------


def test_a_realistic_argument_schema_is_valid() -> None:
    schema = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "description": "Search terms"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            "filters": {
                "type": "object",
                "properties": {
                    "lang": {"enum": ["en", "fr"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
            "mode": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "anything": {},
            "nullable": {"type": ["string", "null"]},
        },
        "required": ["query"],
    }
    assert parameters_problems(schema, LOC) == []


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ([], [("invalid_schema", ["body", "x"])]),
        ({"properties": {}}, [("invalid_schema", ["body", "x", "type"])]),
        ({"type": "array"}, [("invalid_schema", ["body", "x", "type"])]),
        ({"type": "object", "properties": []}, [("invalid_schema", ["body", "x", "properties"])]),
        (
            {"type": "object", "properties": {"a": {"type": "strng"}}},
            [("invalid_schema_type", ["body", "x", "properties", "a", "type"])],
        ),
        (
            {"type": "object", "properties": {"a": "string"}},
            [("invalid_schema", ["body", "x", "properties", "a"])],
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"]},
            [("unknown_required_property", ["body", "x", "required", 1])],
        ),
        ({"type": "object", "required": "a"}, [("invalid_schema", ["body", "x", "required"])]),
        (
            {"type": "object", "properties": {"l": {"type": "array", "items": {"type": "tuple"}}}},
            [("invalid_schema_type", ["body", "x", "properties", "l", "items", "type"])],
        ),
        (
            {"type": "object", "properties": {"s": {"type": "string", "pattern": "("}}},
            [("invalid_schema", ["body", "x", "properties", "s", "pattern"])],
        ),
        (
            {"type": "object", "properties": {"s": {"type": "string", "maxLength": -1}}},
            [("invalid_schema", ["body", "x", "properties", "s", "maxLength"])],
        ),
        (
            {"type": "object", "properties": {"e": {"enum": []}}},
            [("invalid_schema", ["body", "x", "properties", "e", "enum"])],
        ),
        (
            {"type": "object", "properties": {"o": {"oneOf": []}}},
            [("invalid_schema", ["body", "x", "properties", "o", "oneOf"])],
        ),
    ],
)
def test_schema_problems_name_their_path(schema: Any, expected: list[tuple[str, list[str | int]]]) -> None:
    assert [(p["code"], p["loc"]) for p in parameters_problems(schema, LOC)] == expected


# --- URL templates and hosts ----------------------------------------------------------------------


def test_placeholders_must_be_declared_and_stay_out_of_the_host() -> None:
    args = {"city", "units"}
    assert (
        url_template_problems("https://api.example.com/{city}?u={units}", args, ["api.example.com"], LOC)
        == []
    )
    assert codes(url_template_problems("https://api.example.com/{town}", args, ["api.example.com"], LOC)) == [
        "undeclared_argument"
    ]
    assert codes(url_template_problems("https://{city}.example.com/", args, ["*.example.com"], LOC)) == [
        "placeholder_in_host"
    ]
    assert codes(
        url_template_problems("https://api.example.com:{units}/", args, ["api.example.com"], LOC)
    ) == ["placeholder_in_host"]
    assert codes(url_template_problems("https://api.example.com/{city", args, ["api.example.com"], LOC)) == [
        "malformed_placeholder"
    ]
    assert codes(url_template_problems("ftp://api.example.com/", args, ["api.example.com"], LOC)) == [
        "invalid_url"
    ]
    assert codes(url_template_problems("https:///path", args, [], LOC)) == ["invalid_url"]


def test_the_host_must_be_allowed() -> None:
    problems = url_template_problems("https://evil.example.net/x", set(), ["api.example.com"], LOC)
    assert [(p["code"], p["loc"], p["host"]) for p in problems] == [
        ("host_not_allowed", ["body", "allowed_hosts"], "evil.example.net")
    ]
    assert host_allowed("API.Example.com", ["api.example.com"])
    assert host_allowed("eu.api.example.com", ["*.example.com"])
    assert not host_allowed("example.com", ["*.example.com"]), "a wildcard matches subdomains only"
    assert not host_allowed("badexample.com", ["*.example.com"])


@pytest.mark.parametrize("host", ["10.0.0.5", "127.0.0.1", "192.168.1.1", "169.254.169.254", "[::1]"])
def test_private_addresses_need_an_exact_entry(host: str) -> None:
    url = f"http://{host}/metadata"
    problems = url_template_problems(url, set(), ["*.example.com", "*.internal.local"], LOC)
    assert codes(problems) == ["host_not_allowed"] and "private or loopback" in problems[0]["message"]
    assert url_template_problems(url, set(), [host.strip("[]")], LOC) == []


def test_credentials_never_travel_in_the_url() -> None:
    allowed = ["api.example.com"]
    for url in (
        "https://api.example.com/s?api_key=abc123",
        "https://api.example.com/s?q=x&apiKey=abc",
        "https://api.example.com/s?access_token=abc",
        "https://api.example.com/s?client_secret=abc",
        "https://api.example.com/s?key=AIzaSy",
        "https://api.example.com/s?sig=abc",
        "https://user:pass@api.example.com/s",
    ):
        assert "secret_in_url" in codes(url_template_problems(url, {"q"}, allowed, LOC)), url
    # the model supplies the argument: nothing is stored in clear; ordinary parameters are fine
    assert url_template_problems("https://api.example.com/s?api_key={q}&keyword=x", {"q"}, allowed, LOC) == []


def test_allowed_hosts_entries() -> None:
    good = ["api.example.com", "*.example.org", "10.1.2.3", "::1", "localhost", "svc-1"]
    assert allowed_hosts_problems(good, LOC) == []
    bad = ["https://api.example.com", "api.example.com:443", "*.com", "exa mple.com", "0.0.0.0", "a/b"]
    assert [p["loc"][-1] for p in allowed_hosts_problems(bad, LOC)] == list(range(len(bad)))


# --- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "proxy-authorization",
        "X-Api-Key",
        "Cookie",
        "X-Auth-Token",
        "X-Client-Secret",
        "Api-Key",
    ],
)
def test_sensitive_headers_must_be_secret_references(name: str) -> None:
    problems = headers_problems({name: "s3cr3t"}, ["body", "headers"])
    assert [(p["code"], p["loc"]) for p in problems] == [("secret_in_header", ["body", "headers", name])]
    assert headers_problems({name: {"secret_ref": "my_secret"}}, ["body", "headers"]) == []


def test_credential_values_are_refused_under_any_name_and_other_header_rules() -> None:
    assert codes(headers_problems({"X-Custom": "Bearer abc.def"}, LOC)) == ["secret_in_header"]
    assert codes(headers_problems({"X-Custom": "basic dXNlcjpwYXNz"}, LOC)) == ["secret_in_header"]
    assert headers_problems({"Accept": "application/json", "X-Trace": "on"}, LOC) == []
    assert codes(headers_problems({"Host": "internal"}, LOC)) == ["forbidden_header"]
    assert codes(headers_problems({"X-A": "a\r\nX-Injected: 1"}, LOC)) == ["invalid_header_value"]
    assert codes(headers_problems({"X.Dot": "v"}, LOC)) == ["invalid_header_name"]
    assert codes(headers_problems({"X-A": "v", "x-a": "w"}, LOC)) == ["duplicate_header"]
    assert codes(headers_problems({"Authorization": {"secret_ref": "bad name"}}, LOC)) == [
        "invalid_secret_ref"
    ]
    assert codes(headers_problems({"Authorization": {"secret_ref": "n", "value": "x"}}, LOC)) == [
        "invalid_secret_ref"
    ]


# --- whole definitions ----------------------------------------------------------------------------


def test_a_valid_http_tool_and_every_problem_at_once() -> None:
    assert definition_problems(http_tool()) == []
    problems = definition_problems(
        http_tool(
            name="9lives",
            method="TRACE",
            url_template="https://other.example.com/{town}",
            headers={"Authorization": "token abc"},
            builtin="calculator",
            timeout_ms=0,
        )
    )
    assert codes(problems) == [
        "invalid_name",
        "invalid_timeout",
        "invalid_method",
        "undeclared_argument",
        "host_not_allowed",
        "secret_in_header",
        "not_for_kind",
    ]


def test_builtin_tools() -> None:
    def builtin(name: str, **kw: Any) -> dict[str, Any]:
        return http_tool(
            kind="builtin",
            builtin=name,
            method=None,
            url_template=None,
            headers={},
            parameters=BUILTINS.get(name, {"parameters": {"type": "object"}})["parameters"],
            allowed_hosts=[],
            **kw,
        )

    for name in ("calculator", "json_extract", "current_time"):
        assert definition_problems(builtin(name)) == [], name
    assert codes(definition_problems(builtin("shell"))) == ["unknown_builtin"]
    assert codes(definition_problems(builtin("http_get_allowlisted"))) == ["missing_allowed_hosts"]
    fetcher = {**builtin("http_get_allowlisted"), "allowed_hosts": ["docs.example.com"]}
    assert definition_problems(fetcher) == []
    assert codes(definition_problems({**builtin("calculator"), "parameters": {"type": "object"}})) == [
        "builtin_argument_missing"
    ]
    assert codes(definition_problems({**builtin("calculator"), "url_template": "https://x.io/"})) == [
        "not_for_kind"
    ]
    assert codes(definition_problems(http_tool(kind="grpc"))) == ["invalid_kind"]
