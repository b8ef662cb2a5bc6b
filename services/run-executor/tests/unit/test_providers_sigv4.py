"""SigV4 against AWS's published test suite vectors (aws-sig-v4-test-suite: get-vanilla,
get-vanilla-query-order-key-case, post-vanilla; credentials AKIDEXAMPLE, 2015-08-30T12:36:00Z,
us-east-1, service "service")."""

from datetime import UTC, datetime

import pytest

from run_executor.providers.sigv4 import AwsCredentials, canonical_query, canonical_uri, sign

pytestmark = pytest.mark.unit

SUITE = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
WHEN = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


def _suite(method: str, path: str, query: str = "") -> dict[str, str]:
    return sign(
        method=method,
        raw_path=path,
        raw_query=query,
        headers={"Host": "example.amazonaws.com"},
        payload=b"",
        credentials=SUITE,
        region="us-east-1",
        service="service",
        now=WHEN,
    )


@pytest.mark.parametrize(
    ("name", "method", "query", "signature"),
    [
        ("get-vanilla", "GET", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        ("post-vanilla", "POST", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ],
)
def test_aws_test_suite_vectors(name: str, method: str, query: str, signature: str) -> None:
    headers = _suite(method, "/", query)
    assert headers["x-amz-date"] == "20150830T123600Z"
    assert headers["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date, Signature={signature}"
    ), name


def test_session_token_is_sent_and_signed() -> None:
    creds = AwsCredentials("AKIDEXAMPLE", "secret", "FwoGZXIvYXdzEXAMPLETOKEN")
    headers = sign(
        method="POST",
        raw_path="/",
        headers={"host": "example.amazonaws.com"},
        payload=b"{}",
        credentials=creds,
        region="us-east-1",
        service="bedrock",
        now=WHEN,
    )
    assert headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN"
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token," in headers["authorization"]


def test_canonical_uri_encodes_the_sent_path_once_more() -> None:
    # a Bedrock model id `…-v1:0` travels as `…-v1%3A0` and is signed as `…-v1%253A0` (botocore does so)
    assert canonical_uri("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse") == (
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
    )
    assert canonical_uri("") == "/"
    assert canonical_query("b=2&a=1&a=0&c=x%20y") == "a=0&a=1&b=2&c=x%20y"


def test_credentials_parse_and_never_print_the_secret() -> None:
    creds = AwsCredentials.from_secret('{"AccessKeyId": "AKID", "SecretAccessKey": "s3cr3t-value"}')
    assert creds == AwsCredentials("AKID", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(creds)
    with pytest.raises(ValueError) as info:
        AwsCredentials.from_secret("s3cr3t-value-not-json")
    assert "s3cr3t-value" not in str(info.value)
    with pytest.raises(ValueError):
        AwsCredentials.from_secret('{"access_key_id": "AKID"}')
