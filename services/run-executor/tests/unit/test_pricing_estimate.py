"""Cost estimates: exact Decimal arithmetic per provider token convention, model resolution
(aliases, dated snapshots, Bedrock regional ids), unknown models, per-tenant overrides."""

import json
from decimal import Decimal

import pytest

from run_executor.pricing import (
    QUANTUM,
    PriceTable,
    default_price_table,
    estimate_cost,
    load_price_table,
    price_table_for,
)
from run_executor.providers import TokenUsage

pytestmark = pytest.mark.unit

D = Decimal


def openai_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> TokenUsage:
    return TokenUsage(prompt, completion, cached, reasoning, cached_included_in_input=True)


def test_openai_cached_tokens_are_a_discounted_part_of_the_prompt() -> None:
    # gpt-4o: 2.50 in, 1.25 cached, 10.00 out per 1M. 1000 prompt (400 cached) + 500 out:
    # 600 * 2.50 + 400 * 1.25 + 500 * 10.00 = 1500 + 500 + 5000 = 7000 per 1M -> 0.007
    estimate = estimate_cost("openai", "gpt-4o", openai_usage(1000, 500, cached=400))
    assert estimate.total == D("0.0070000000")
    assert estimate.breakdown["input"] == D("0.0015")
    assert estimate.breakdown["cached_input"] == D("0.0005")
    assert estimate.breakdown["output"] == D("0.005")
    assert estimate.price_version == default_price_table().version and estimate.warning is None
    assert estimate.matched_model == "gpt-4o" and estimate.total_usd == "0.007"


def test_reasoning_tokens_are_priced_once_inside_the_output() -> None:
    # o3-mini: 1.10 in, 4.40 out, reasoning 4.40. 2000 out of which 1500 reasoning -> 2000 * 4.40
    estimate = estimate_cost("openai", "o3-mini", openai_usage(100, 2000, reasoning=1500))
    assert estimate.breakdown["output"] == D("0.0022")  # 500 * 4.40 / 1e6
    assert estimate.breakdown["reasoning"] == D("0.0066")  # 1500 * 4.40 / 1e6
    assert estimate.total == D("0.00011") + D("0.0088")


def test_anthropic_cache_reads_and_writes_add_to_the_input() -> None:
    # claude-3-5-sonnet: 3.00 in, 0.30 cache read, 3.75 cache write, 15.00 out
    usage = TokenUsage(
        input_tokens=100, output_tokens=200, cached_input_tokens=10_000, cache_write_input_tokens=2_000
    )
    estimate = estimate_cost("anthropic", "claude-3-5-sonnet-20241022", usage)
    assert estimate.breakdown == {
        "input": D("0.0003"),
        "cached_input": D("0.003"),
        "cache_write": D("0.0075"),
        "output": D("0.003"),
        "reasoning": D("0"),
    }
    assert estimate.total == D("0.0138")


def test_decimal_arithmetic_is_exact_and_quantized_once_at_the_end() -> None:
    # gpt-4o-mini input 0.15 per 1M: 1 token = 0.00000015 exactly; 3 tokens = 0.00000045
    assert estimate_cost("openai", "gpt-4o-mini", openai_usage(3, 0)).total == D("0.00000045")
    # nova-micro cached 0.00875 per 1M: 1 token = 8.75e-9 -> 0.0000000088 after rounding half-up
    one_cached = TokenUsage(input_tokens=0, output_tokens=0, cached_input_tokens=1)
    assert estimate_cost("bedrock", "amazon.nova-micro-v1:0", one_cached).total == D("0.0000000088")
    # no float drift over a huge count: 10^12 tokens at 0.15 = 150000 USD exactly
    assert estimate_cost("openai", "gpt-4o-mini", openai_usage(10**12, 0)).total == D("150000.0000000000")
    assert (
        estimate_cost("openai", "gpt-4o", openai_usage(1, 1)).total.as_tuple().exponent
        == QUANTUM.as_tuple().exponent
    )
    # parts are summed unrounded: 3 tokens at 8.75e-9 = 2.625e-8 -> 0.0000000263 (not 3 * 0.0000000088)
    three_cached = TokenUsage(input_tokens=0, output_tokens=0, cached_input_tokens=3)
    assert estimate_cost("bedrock", "amazon.nova-micro-v1:0", three_cached).total == D("0.0000000263")


@pytest.mark.parametrize(
    ("provider", "model", "key"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # the dearer first snapshot has its own entry
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "GPT-4o-Mini", "gpt-4o-mini"),
        ("openai", "o3-mini-2025-01-31", "o3-mini"),
        ("openai", "o3-2025-04-16", "o3"),
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "gpt-4-0613", "gpt-4"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet"),
        ("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku"),
        ("bedrock", "eu.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4"),
        (
            "bedrock",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-70b-instruct-v1:0",
            "meta.llama3-1-70b-instruct",
        ),
        ("bedrock", "amazon.titan-text-express-v1", "amazon.titan-text-express-v1"),
        ("bedrock", "meta.llama3-1-8b-instruct-v1:0", "meta.llama3-1-8b-instruct"),
        ("local", "local-echo", "*"),
    ],
)
def test_models_resolve_by_exact_then_longest_prefix(provider: str, model: str, key: str) -> None:
    match = default_price_table().lookup(provider, model)
    assert match is not None and match.key == key


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4oz"),  # a prefix without a separator is not a family
        ("openai", "llama3.1:8b"),  # an OpenAI-compatible server's model: unknown until priced
        ("anthropic", "claude-2"),
        ("cohere", "command-r"),
        ("bedrock", "cohere.command-r-v1:0"),
    ],
)
def test_unknown_models_have_no_cost_and_a_warning_never_zero(provider: str, model: str) -> None:
    estimate = estimate_cost(provider, model, TokenUsage(1000, 1000))
    assert estimate.total is None and estimate.total_usd is None
    assert estimate.warning is not None and model in estimate.warning
    assert estimate.breakdown == {}


def test_local_models_are_free() -> None:
    estimate = estimate_cost("local", "anything", TokenUsage(10**6, 10**6))
    assert estimate.total == D(0) and estimate.total_usd == "0" and estimate.warning is None


def test_tenant_overrides_change_prices_and_the_version() -> None:
    table = price_table_for(
        {
            "openai": {"gpt-4o": {"input": "2.00"}, "llama3.1:8b": {"input": "0.05", "output": "0.10"}},
            "ollama": {"*": {"input": 0, "output": 0}},
        },
        label="tenant:acme:2025-q3",
    )
    base = default_price_table()
    assert table.version == f"{base.version}+tenant:acme:2025-q3"
    discounted = estimate_cost(
        "openai", "gpt-4o-2024-11-20", openai_usage(1_000_000, 0, cached=500_000), table=table
    )
    assert discounted.breakdown["input"] == D("1.0")  # 500k fresh at the tenant's 2.00
    assert discounted.breakdown["cached_input"] == D("0.625")  # cache price kept from the base table
    assert discounted.price_version == table.version
    assert estimate_cost("openai", "llama3.1:8b", openai_usage(1_000_000, 1_000_000), table=table).total == D(
        "0.15"
    )
    assert estimate_cost("ollama", "qwen2.5", TokenUsage(5, 5), table=table).total == D(0)
    # the shared table is untouched
    assert estimate_cost("openai", "gpt-4o", openai_usage(1_000_000, 0)).total == D("2.5")
    assert price_table_for(None) is base


@pytest.mark.parametrize(
    "overrides",
    [
        {"openai": {"gpt-5-turbo": {"input": "1"}}},  # a new model needs input and output
        {"openai": {"gpt-4o": {"input": "-1"}}},
        {"openai": {"gpt-4o": {"input": "NaN"}}},
        {"openai": {"gpt-4o": {"input": "cheap"}}},
        {"openai": {"gpt-4o": {"inptu": "1"}}},
    ],
)
def test_invalid_overrides_are_refused(overrides: dict) -> None:
    with pytest.raises(ValueError):
        price_table_for(overrides)


def test_inconsistent_usage_is_priced_without_negative_parts() -> None:
    estimate = estimate_cost("openai", "gpt-4o", openai_usage(10, 5, cached=20))
    assert estimate.breakdown["input"] == D(0) and estimate.warning is not None


def test_the_packaged_table_is_complete_and_versioned(tmp_path) -> None:
    table = load_price_table()
    assert table.version and table.effective_date.isoformat() == "2025-07-01"
    for provider, model in [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "o3-mini"),
        ("anthropic", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-5-haiku"),
        ("anthropic", "claude-sonnet-4"),
        ("bedrock", "anthropic.claude-3-5-sonnet"),
        ("bedrock", "amazon.titan-text-express-v1"),
        ("bedrock", "meta.llama3-1-70b-instruct"),
        ("local", "*"),
    ]:
        assert model in table.prices[provider]
    for models in table.prices.values():
        for price in models.values():
            assert all(isinstance(v, Decimal) for v in (price.input, price.output, price.cached_input_rate))
    copy = tmp_path / "prices.json"
    copy.write_text(
        json.dumps(
            {
                "version": "test-1",
                "effective_date": "2030-01-01",
                "providers": {"openai": {"gpt-4o": {"input": "1", "output": "2"}}},
            }
        )
    )
    custom = load_price_table(copy)
    assert isinstance(custom, PriceTable) and custom.version == "test-1"
    assert estimate_cost("openai", "gpt-4o", openai_usage(10**6, 10**6), table=custom).total == D(3)
