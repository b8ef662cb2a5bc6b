"""Bedrock adapter details against the fake, which verifies every SigV4 signature it receives
(its own implementation, written from the AWS docs) and answers 403 to a bad one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from run_executor.providers import (
    BedrockConfig,
    BedrockProvider,
    CircuitBreakerRegistry,
    ProviderError,
    ProviderRequest,
    RetryPolicy,
    StaticSecretResolver,
    TextDelta,
    TokenUsage,
)

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # makes services/run-executor/tests/fakes importable
from fakes import provider_bedrock as fb  # noqa: E402
from fakes.provider_http import FakeServer  # noqa: E402

pytestmark = pytest.mark.integration

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture
def verifier() -> fb.SigV4Verifier:
    return fb.SigV4Verifier({KEY_ID: SECRET}, region="eu-central-1")


@pytest.fixture
def server(verifier: fb.SigV4Verifier):
    with FakeServer(fb.echo, check=verifier) as srv:
        yield srv


def provider_for(server: FakeServer, secret: str, region: str = "eu-central-1") -> BedrockProvider:
    config = BedrockConfig(
        base_url=server.base_url, region=region, secret_ref="aws", retry=RetryPolicy(base_delay_s=0.01)
    )
    return BedrockProvider(config, StaticSecretResolver({"aws": secret}), breakers=CircuitBreakerRegistry())


def credential(secret: str = SECRET) -> str:
    return json.dumps({"access_key_id": KEY_ID, "secret_access_key": secret})


def req(**kw) -> ProviderRequest:
    base = {"provider": "bedrock", "model": MODEL, "messages": [{"role": "user", "content": "Bonjour"}]}
    return ProviderRequest(**{**base, **kw})


async def test_signed_converse_call(server: FakeServer, verifier: fb.SigV4Verifier) -> None:
    provider = provider_for(server, credential())
    try:
        response = await provider.complete(req(max_tokens=50))
    finally:
        await provider.aclose()
    assert response.text == "echo: Bonjour" and response.provider_request_id == fb.REQUEST_ID
    assert verifier.verified == 1 and verifier.rejected == []
    (sent,) = server.requests
    # the model id travels percent-encoded (`:` -> %3A) and is signed encoded once more
    assert sent.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert (
        "/eu-central-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
        in (sent.headers["authorization"])
    )
    assert sent.json()["inferenceConfig"] == {"maxTokens": 50}


async def test_a_wrong_secret_is_rejected_with_403(server: FakeServer, verifier: fb.SigV4Verifier) -> None:
    provider = provider_for(server, credential("not-the-right-secret"))
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(req())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_auth_failed" and info.value.status == 403
    assert "signature" in info.value.message and verifier.rejected == ["signature mismatch"]
    assert len(server.requests) == 1  # auth failures are not retried


async def test_a_wrong_region_is_rejected(server: FakeServer, verifier: fb.SigV4Verifier) -> None:
    provider = provider_for(server, credential(), region="us-west-2")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(req())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_auth_failed" and verifier.rejected == ["bad credential scope"]


async def test_an_unusable_credential_is_auth_failed_without_echoing_it(server: FakeServer) -> None:
    provider = provider_for(server, "plain-secret-not-json")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(req())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_auth_failed" and "plain-secret-not-json" not in str(info.value)
    assert server.requests == []


async def test_converse_stream_path_and_frames(server: FakeServer, verifier: fb.SigV4Verifier) -> None:
    server.script(fb.stream_reply(fb.stream_frames(["Bon", "jour", " !"], usage_block=fb.usage(5, 3))))
    provider = provider_for(server, credential())
    try:
        events = [e async for e in provider.stream(req())]
    finally:
        await provider.aclose()
    assert server.requests[0].path.endswith("%3A0/converse-stream") and verifier.verified == 1
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Bon", "jour", " !"]
    assert events[-1].usage == TokenUsage(5, 3) and events[-1].finish_reason == "stop"


async def test_exception_frame_mid_stream(server: FakeServer) -> None:
    frames = fb.stream_frames(["Bon"])
    server.script(
        fb.stream_reply(frames[:2] + [fb.exception("throttlingException", "Too many tokens, please wait.")])
    )
    provider = provider_for(server, credential())
    try:
        with pytest.raises(ProviderError) as info:
            [e async for e in provider.stream(req())]
    finally:
        await provider.aclose()
    assert info.value.code == "provider_rate_limited" and "Too many tokens" in info.value.message


async def test_aws_error_bodies(server: FakeServer) -> None:
    server.script(fb.error(400, "The provided model identifier is invalid.", "ValidationException"))
    provider = provider_for(server, credential())
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(req())
    finally:
        await provider.aclose()
    assert info.value.code == "provider_bad_request"
    assert (
        "model identifier is invalid" in info.value.message
        and info.value.provider_request_id == fb.REQUEST_ID
    )
