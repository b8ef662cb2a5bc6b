"""Amazon Bedrock Converse wire format for the fake server: Converse bodies, AWS error bodies, the
ConverseStream event-stream binary frames, and a SigV4 verifier that recomputes the signature of
every request from what it received and answers 403 (as AWS does) when it does not match.

The verifier and the frame encoder are written here from the AWS documentation, separately from
the adapter's own signer and decoder, so a test compares two implementations."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from fakes.provider_http import Recorded, Reply, word_chunks

REQUEST_ID = "7d1c2f46-1b5e-4a7f-9b1f-3a6cda3d2a11"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def usage(
    input_tokens: int, output_tokens: int, *, cache_read: int = 0, cache_write: int = 0
) -> dict[str, Any]:
    block = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + cache_read + cache_write,
    }
    if cache_read or cache_write:
        block |= {"cacheReadInputTokens": cache_read, "cacheWriteInputTokens": cache_write}
    return block


def converse(
    text: str | None = "Hello!",
    *,
    tool_uses: list[tuple[str, str, dict[str, Any]]] | None = None,
    stop_reason: str | None = None,
    usage_block: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": text}] if text else []
    content += [
        {"toolUse": {"toolUseId": tid, "name": name, "input": args}} for tid, name, args in tool_uses or []
    ]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "usage": usage_block or usage(12, 6),
        "metrics": {"latencyMs": 412},
    }


def ok(data: dict[str, Any], **kw: Any) -> Reply:
    return Reply.json(data, headers={"x-amzn-RequestId": REQUEST_ID}, **kw)


def error(status: int, message: str, kind: str, *, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
    return Reply.json(
        {"message": message},
        status,
        {
            "x-amzn-RequestId": REQUEST_ID,
            "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            **(headers or {}),
        },
        **kw,
    )


# ------------------------------------------------------------------------- event-stream frames


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    header_bytes = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + header_bytes + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 5 + len(kind) % 7]}).encode()
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}, payload
    )


def exception(kind: str, message: str) -> bytes:
    return frame(
        {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


def stream_frames(
    parts: list[str],
    *,
    tool_uses: list[tuple[str, str, list[str]]] | None = None,
    stop_reason: str | None = None,
    usage_block: dict[str, Any] | None = None,
) -> list[bytes]:
    """messageStart, text block deltas, toolUse blocks, messageStop, metadata (usage comes last)."""
    out = [event("messageStart", {"role": "assistant"})]
    index = 0
    if parts:
        for part in parts:
            out.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": part}}))
        out.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for tid, name, pieces in tool_uses or []:
        out.append(
            event(
                "contentBlockStart",
                {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": tid, "name": name}}},
            )
        )
        for piece in pieces:
            out.append(
                event(
                    "contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
                )
            )
        out.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    out.append(event("messageStop", {"stopReason": stop_reason or ("tool_use" if tool_uses else "end_turn")}))
    out.append(event("metadata", {"usage": usage_block or usage(12, 6), "metrics": {"latencyMs": 318}}))
    return out


def stream_reply(chunks: list[bytes], **kw: Any) -> Reply:
    return Reply(
        headers={"content-type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": REQUEST_ID},
        chunks=chunks,
        **kw,
    )


def echo(record: Recorded) -> Reply:
    body = record.json()
    last = " ".join(b.get("text", "") for b in body["messages"][-1]["content"])
    text = f"echo: {last}"
    block = usage(len(last.split()), len(text.split()))
    if record.path.split("?")[0].endswith("/converse-stream"):
        return stream_reply(stream_frames(word_chunks(text), usage_block=block))
    return ok(converse(text, usage_block=block))


# ------------------------------------------------------------------------- SigV4 verification


def _encode(value: bytes, keep_slash: bool) -> str:
    out = []
    for byte in value:
        if byte in _UNRESERVED or (keep_slash and byte == ord("/")):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class SigV4Verifier:
    """Checks `Authorization: AWS4-HMAC-SHA256 …` the way AWS does for a non-S3 service: the
    canonical URI is the received (already percent-encoded) path encoded once more."""

    def __init__(
        self,
        keys: dict[str, str],
        *,
        region: str,
        service: str = "bedrock",
        session_tokens: dict[str, str] | None = None,
        max_skew_s: float = 300,
    ) -> None:
        self.keys = keys
        self.region = region
        self.service = service
        self.session_tokens = session_tokens or {}
        self.max_skew_s = max_skew_s
        self.verified = 0
        self.rejected: list[str] = []

    def _reject(self, why: str) -> Reply:
        self.rejected.append(why)
        kind = "UnrecognizedClientException" if "unknown key" in why else "InvalidSignatureException"
        message = (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
        return error(
            403,
            message
            if kind == "InvalidSignatureException"
            else "The security token included in the request is invalid.",
            kind,
        )

    def __call__(self, record: Recorded) -> Reply | None:
        auth = record.headers.get("authorization", "")
        algorithm, _, rest = auth.partition(" ")
        if algorithm != "AWS4-HMAC-SHA256":
            return self._reject("missing or foreign authorization")
        fields = dict(part.strip().split("=", 1) for part in rest.split(","))
        key_id, date, region, service, terminal = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        stamp = record.headers.get("x-amz-date", "")
        if key_id not in self.keys:
            return self._reject(f"unknown key {key_id}")
        if (region, service, terminal) != (self.region, self.service, "aws4_request") or not stamp.startswith(
            date
        ):
            return self._reject("bad credential scope")
        if not {"host", "x-amz-date"} <= set(signed) or signed != sorted(signed):
            return self._reject("host and x-amz-date must be signed, in order")
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs((datetime.now(UTC) - when).total_seconds()) > self.max_skew_s:
            return self._reject("request time too skewed")
        expected_token = self.session_tokens.get(key_id)
        if expected_token is not None and (
            record.headers.get("x-amz-security-token") != expected_token
            or "x-amz-security-token" not in signed
        ):
            return self._reject("missing or unsigned session token")
        path, _, query = record.path.partition("?")
        pairs = sorted(
            (_encode(unquote(k).encode(), False), _encode(unquote(v).encode(), False))
            for k, _, v in (p.partition("=") for p in query.split("&") if p)
        )
        canonical = "\n".join(
            [
                record.method,
                _encode(path.encode(), True),
                "&".join(f"{k}={v}" for k, v in pairs),
                "".join(f"{h}:{' '.join(record.headers.get(h, '').split())}\n" for h in signed),
                ";".join(signed),
                hashlib.sha256(record.body).hexdigest(),
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _hmac(f"AWS4{self.keys[key_id]}".encode(), date)
        for part in (region, service, "aws4_request"):
            key = _hmac(key, part)
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            return self._reject("signature mismatch")
        self.verified += 1
        return None
