"""AWS Signature Version 4 (header form), with the standard library only.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html. For every
service but S3 the canonical URI is the request path URI-encoded once more (a model id
`…-v1:0` travels as `…-v1%3A0` and is signed as `…-v1%253A0`), as botocore does. Checked against the
AWS SigV4 test suite (get-vanilla, get-vanilla-query-order-key-case, post-vanilla) in the unit tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"

    @classmethod
    def from_secret(cls, value: str) -> AwsCredentials:
        """Parse the secret stored for Bedrock: a JSON object
        `{"access_key_id": ..., "secret_access_key": ..., "session_token": ...?}` (the AWS names
        `AccessKeyId`/`SecretAccessKey`/`SessionToken` are accepted too)."""
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ValueError(
                "the Bedrock credential must be a JSON object with access_key_id and secret_access_key"
            )
        key_id = data.get("access_key_id") or data.get("AccessKeyId")
        secret = data.get("secret_access_key") or data.get("SecretAccessKey")
        token = data.get("session_token") or data.get("SessionToken")
        if not key_id or not secret:
            raise ValueError("the Bedrock credential lacks access_key_id or secret_access_key")
        return cls(str(key_id), str(secret), str(token) if token else None)


def amz_date(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_uri(raw_path: str, *, double_encode: bool = True) -> str:
    path = raw_path or "/"
    return quote(path, safe="/~") if double_encode else path


def canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_uri_encode(unquote(name)), _uri_encode(unquote(value))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _canonical_header_value(value: str) -> str:
    return " ".join(value.strip().split())


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_hash: str,
    *,
    double_encode: bool = True,
) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    header_block = "".join(f"{name}:{_canonical_header_value(lowered[name])}\n" for name in signed_headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path, double_encode=double_encode),
            canonical_query(raw_query),
            header_block,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret_access_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    *,
    method: str,
    raw_path: str,
    raw_query: str = "",
    headers: Mapping[str, str],
    payload: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime | None = None,
    double_encode: bool = True,
) -> dict[str, str]:
    """Headers to add to the request: `x-amz-date`, `authorization` and, with temporary credentials,
    `x-amz-security-token`. `headers` must hold `host` and every other header to sign."""
    stamp = amz_date(now or datetime.now(UTC))
    to_sign = {k.lower(): v for k, v in headers.items()}
    to_sign["x-amz-date"] = stamp
    added = {"x-amz-date": stamp}
    if credentials.session_token:
        to_sign["x-amz-security-token"] = credentials.session_token
        added["x-amz-security-token"] = credentials.session_token
    signed_headers = sorted(to_sign)
    payload_hash = hashlib.sha256(payload).hexdigest()
    request = canonical_request(
        method, raw_path, raw_query, to_sign, signed_headers, payload_hash, double_encode=double_encode
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = signing_key(credentials.secret_access_key, stamp[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )
    return added
