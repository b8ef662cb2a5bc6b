"""Every evaluator type of the experiment contract, the output/expected field rules, the judge
prompt and the parsing of judge answers."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter

from ailab_contracts.events.experiments import EvaluatorSpec
from run_executor.experiments.evaluators import (
    comparable_output,
    expected_fields,
    output_text,
    score_sync,
    without_fields,
)
from run_executor.experiments.judge import (
    JUDGE_INSTRUCTIONS,
    JudgeBinding,
    ProviderJudge,
    build_judge_messages,
    parse_judge_answer,
)
from run_executor.experiments.ports import ExperimentRunError, JudgeReply, JudgeRequest
from run_executor.providers import LocalProvider, LocalProviderConfig, ProviderRegistry

pytestmark = pytest.mark.unit

SPEC = TypeAdapter(EvaluatorSpec)


def ev(type_: str, name: str = "e", **config: Any) -> Any:
    return SPEC.validate_python({"name": name, "type": type_, "config": config})


def score(
    spec: Any, output: Any, example: dict[str, Any] | None = None, expected_field: str = "expected"
) -> Any:
    result = score_sync(spec, output, example or {}, expected_field)
    assert result is not None
    return result


# --- output and field rules ---------------------------------------------------------------------


def test_comparable_output_prefers_text_then_output_key() -> None:
    assert comparable_output({"text": "billing", "finish_reason": "stop"}) == "billing"
    assert comparable_output({"output": {"text": "x"}}) == "x"
    assert comparable_output({"output": 42}) == 42
    assert comparable_output({"answer": "a"}) == {"answer": "a"}
    assert comparable_output({"text": 5, "output": "o"}) == "o"  # a non-string text is not the text
    assert output_text(None) == ""
    assert output_text({"a": "é"}) == '{"a": "é"}'


def test_input_is_the_example_without_answer_fields() -> None:
    specs = [
        ev("exact_match"),
        ev("contains", name="c", field="labels.keyword"),
        ev("regex", name="r", pattern="x"),
    ]
    fields = expected_fields(specs, "expected")
    assert fields == ["expected", "labels.keyword"]
    example = {"question": "q", "expected": "a", "labels": {"keyword": "k", "topic": "t"}}
    assert without_fields(example, fields) == {"question": "q", "labels": {"topic": "t"}}
    assert example["labels"] == {"keyword": "k", "topic": "t"}  # the example itself is untouched


# --- exact_match ---------------------------------------------------------------------------------


def test_exact_match_strings_trimmed_and_case() -> None:
    assert score(ev("exact_match"), " billing\n", {"expected": "billing"}).passed
    miss = score(ev("exact_match"), "Billing", {"expected": "billing"})
    assert (miss.passed, miss.score) == (False, 0.0)
    assert "expected 'billing', got 'Billing'" in miss.detail
    assert score(ev("exact_match", case_sensitive=False), "BILLING", {"expected": "billing"}).passed


def test_exact_match_uses_own_field_nested_and_text_key() -> None:
    spec = ev("exact_match", field="gold.label")
    assert score(spec, {"text": "tech", "tool_calls": []}, {"gold": {"label": "tech"}}).passed
    missing = score(spec, "tech", {"expected": "tech"})
    assert not missing.passed and missing.detail == "example has no field 'gold.label'"


def test_exact_match_structured_values() -> None:
    assert score(
        ev("exact_match"), {"output": {"a": 1, "b": [1, 2]}}, {"expected": {"b": [1, 2], "a": 1.0}}
    ).passed
    assert score(ev("exact_match"), "42", {"expected": 42}).passed  # a string output parsed as JSON
    assert not score(ev("exact_match"), True, {"expected": 1}).passed  # bools never equal numbers
    assert not score(ev("exact_match"), "the answer is 42", {"expected": 42}).passed


def test_exact_match_experiment_expected_field() -> None:
    assert score(ev("exact_match"), "x", {"answer": "x"}, expected_field="answer").passed


# --- contains ------------------------------------------------------------------------------------


def test_contains_value_and_field() -> None:
    assert score(ev("contains", value="refund"), "We will refund you", {}).passed
    assert not score(ev("contains", value="Refund"), "we will refund you", {}).passed
    assert score(ev("contains", value="Refund", case_sensitive=False), "we will refund you", {}).passed
    assert score(ev("contains", field="kw"), {"text": "order 1234 shipped"}, {"kw": 1234}).passed
    missing = score(ev("contains", field="kw"), "x", {})
    assert not missing.passed and "no field 'kw'" in missing.detail


# --- regex ---------------------------------------------------------------------------------------


def test_regex_search_fullmatch_ignore_case_and_no_match() -> None:
    assert score(ev("regex", pattern=r"\d{4}"), "order 1234", {}).passed
    no = score(ev("regex", pattern=r"^\d+$"), "order 1234", {})
    assert (no.passed, no.score) == (False, 0.0)
    assert no.detail.startswith("no match for")
    assert not score(ev("regex", pattern="billing", full_match=True), "billing dept", {}).passed
    assert score(ev("regex", pattern="(billing|tech)", full_match=True, ignore_case=True), "TECH", {}).passed
    assert score(ev("regex", pattern=r"^\{"), {"a": 1}, {}).passed  # non-text outputs as JSON


# --- json_valid ----------------------------------------------------------------------------------


def test_json_valid_parses_text_fences_and_required_keys() -> None:
    assert score(ev("json_valid"), '{"label": "x"}').passed
    assert score(ev("json_valid"), '```json\n{"label": "x"}\n```').passed
    assert score(ev("json_valid"), {"label": "x"}).passed
    bad = score(ev("json_valid"), "{label: x}")
    assert (bad.passed, bad.score) == (False, 0.0) and bad.detail.startswith("invalid JSON")
    partial = score(ev("json_valid", required_keys=["label", "confidence"]), '{"label": "x"}')
    assert (partial.passed, partial.score) == (False, 0.5)
    assert "confidence" in partial.detail
    assert score(ev("json_valid", required_keys=["label"]), {"text": '{"label": 1}'}).passed
    not_object = score(ev("json_valid", required_keys=["label"]), "[1, 2]")
    assert not not_object.passed and "object" in not_object.detail


# --- numeric_tolerance ---------------------------------------------------------------------------


def test_numeric_exact_is_decimal_exact() -> None:
    assert score(ev("numeric_tolerance"), "0.3", {"expected": 0.3}).passed  # as written, no binary noise
    assert score(ev("numeric_tolerance"), 100, {"expected": "1e2"}).passed
    assert not score(ev("numeric_tolerance"), 0.31, {"expected": 0.3}).passed
    # a float computed by the target carries its binary error: tolerance 0 means exactly equal
    assert not score(ev("numeric_tolerance"), 0.1 + 0.2, {"expected": 0.3}).passed
    assert score(ev("numeric_tolerance", abs_tolerance=1e-9), 0.1 + 0.2, {"expected": 0.3}).passed


def test_numeric_absolute_tolerance_boundary() -> None:
    spec = ev("numeric_tolerance", abs_tolerance=0.5)
    assert score(spec, "10.5", {"expected": 10}).passed  # at the boundary
    assert not score(spec, "10.51", {"expected": 10}).passed


def test_numeric_relative_tolerance_and_max_rule() -> None:
    spec = ev("numeric_tolerance", rel_tolerance=0.05, abs_tolerance=0.1)
    assert score(spec, 104.9, {"expected": 100}).passed  # 5 % of 100 = 5 > 0.1
    assert not score(spec, 105.1, {"expected": 100}).passed
    assert score(spec, 0.09, {"expected": 0}).passed  # rel of 0 is 0, abs 0.1 allows it
    assert score(ev("numeric_tolerance", rel_tolerance=0.01), -99.5, {"expected": -100}).passed


def test_numeric_reads_numbers_from_text_and_refuses_non_numbers() -> None:
    spec = ev("numeric_tolerance", field="answer")
    assert score(spec, "Step 1: add. The answer is 1,250.", {"answer": "1250"}).passed  # last number
    assert score(spec, {"text": "42"}, {"answer": 42}).passed
    none = score(spec, "no idea", {"answer": 1})
    assert not none.passed and "holds no number" in none.detail
    assert "not a number" in score(spec, "1", {"answer": "many"}).detail
    assert not score(spec, True, {"answer": 1}).passed
    assert "no field 'answer'" in score(spec, "1", {}).detail


def test_llm_judge_is_not_scored_synchronously() -> None:
    spec = ev("llm_judge", prompt="Grade {{output}}", model="gpt-4o-mini")
    assert score_sync(spec, "x", {}, "expected") is None


# --- judge answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"score": 0.8, "reasoning": "mostly right"}', 0.8),
        ('Sure!\n```json\n{"score": 1, "reason": "exact"}\n```', 1.0),
        ('{"score": "85%"}', 0.85),
        ('{"score": 8}', 0.8),  # out of 10
        ('{"score": 70}', 0.7),  # out of 100
        ('{"score": -1}', 0.0),  # clamped
        ('{"passed": true}', 1.0),
        ("Score: 7/10 because it misses the tone", 0.7),
        ("score = 0.25", 0.25),
        ('broken {"score": 0.4, json', 0.4),
        ("The score is 90%.", 0.9),
        ("PASS - the output matches", 1.0),
        ("No, wrong queue.", 0.0),
    ],
)
def test_parse_judge_answer(answer: str, expected: float) -> None:
    verdict = parse_judge_answer(answer)
    assert verdict is not None
    assert verdict.score == pytest.approx(expected)


def test_parse_judge_answer_keeps_reasoning_and_refuses_nonsense() -> None:
    verdict = parse_judge_answer('{"score": 0.5, "reasoning": "half"}')
    assert verdict is not None and verdict.reasoning == "half"
    assert parse_judge_answer("I cannot decide") is None
    assert parse_judge_answer('{"verdict": "maybe"}') is None
    assert parse_judge_answer("score: 3/0") is None


def test_judge_messages_fill_placeholders_and_rubric() -> None:
    spec = SPEC.validate_python(
        {
            "name": "j",
            "type": "llm_judge",
            "config": {
                "prompt": "Q: {{ input }}\nA: {{output}}\nGold: {{expected}} {{other}}",
                "model": "m",
                "rubric": "Be strict.",
            },
        }
    )
    messages = build_judge_messages(
        spec,
        [{"role": "user", "content": spec.config.prompt}],
        input_text='{"q": 1}',
        output="out",
        expected="gold",
    )
    assert messages[0]["role"] == "system"
    assert (
        messages[0]["content"].startswith(JUDGE_INSTRUCTIONS)
        and "Grading criteria:\nBe strict." in messages[0]["content"]
    )
    assert messages[1] == {"role": "user", "content": 'Q: {"q": 1}\nA: out\nGold: gold {{other}}'}
    assert len(messages) == 2


def test_judge_messages_without_placeholders_append_the_sections() -> None:
    spec = ev("llm_judge", prompt="Is it polite?", model="m")
    messages = build_judge_messages(
        spec, [{"role": "user", "content": "Is it polite?"}], input_text="{}", output="o", expected=""
    )
    assert messages[-1]["content"] == "Input:\n{}\n\nOutput:\no\n\nExpected:\n"


class FakeJudge:
    def __init__(
        self, answer: str, cost: Decimal | None = Decimal("0.001"), fail: Exception | None = None
    ) -> None:
        self.answer, self.cost, self.fail = answer, cost, fail
        self.requests: list[JudgeRequest] = []

    async def __call__(self, request: JudgeRequest) -> JudgeReply:
        self.requests.append(request)
        if self.fail:
            raise self.fail
        return JudgeReply(self.answer, self.cost)


class FakePrompts:
    def __init__(self) -> None:
        self.calls = 0

    async def messages(self, tenant_id: str, prompt_id: str, version: int) -> list[dict[str, Any]]:
        self.calls += 1
        return [
            {"role": "system", "content": "House style"},
            {"role": "user", "content": "Grade {{output}} vs {{expected}}"},
        ]


async def test_judge_binding_scores_with_threshold_and_cost() -> None:
    judge = FakeJudge('{"score": 0.6, "reasoning": "ok"}')
    binding = JudgeBinding("t1", {"temperature": 0}, judge, None)
    spec = ev("llm_judge", prompt="Grade {{output}}", model="gpt-4o-mini", pass_threshold=0.7)
    result, cost = await binding.grade(spec, inputs={"q": "hi"}, output={"text": "hello"}, expected="hello")
    assert (result.score, result.passed, result.detail) == (0.6, False, "ok")
    assert cost == Decimal("0.001")
    assert judge.requests[0].model == "gpt-4o-mini" and judge.requests[0].tenant_id == "t1"
    assert judge.requests[0].messages[1]["content"] == "Grade hello"


async def test_judge_binding_failures_score_zero() -> None:
    spec = ev("llm_judge", prompt="Grade {{output}}", model="m")
    bad = JudgeBinding("t", {}, FakeJudge("hmm, dunno"), None)
    result, cost = await bad.grade(spec, inputs={}, output="x", expected="")
    assert (result.score, result.passed) == (0.0, False) and "not understood" in result.detail
    assert cost == Decimal("0.001")  # the call happened and was paid
    boom = JudgeBinding("t", {}, FakeJudge("", fail=RuntimeError("down")), None)
    result, cost = await boom.grade(spec, inputs={}, output="x", expected="")
    assert not result.passed and result.detail.startswith("judge_error") and cost is None
    none = JudgeBinding("t", {}, None, None)
    assert "no judge" in (await none.grade(spec, inputs={}, output="x", expected=""))[0].detail


async def test_judge_binding_reads_a_stored_prompt_once() -> None:
    prompts = FakePrompts()
    judge = FakeJudge('{"score": 1}')
    binding = JudgeBinding("t", {}, judge, prompts)
    spec = ev("llm_judge", prompt_id="pmt_1", prompt_version=2, model="m")
    await asyncio.gather(*(binding.grade(spec, inputs={}, output=f"o{i}", expected="e") for i in range(5)))
    assert prompts.calls == 1
    assert [m["content"] for m in judge.requests[0].messages[1:]] == ["House style", "Grade o0 vs e"]
    missing = JudgeBinding("t", {}, judge, None)
    result, _ = await missing.grade(spec, inputs={}, output="o", expected="e")
    assert "judge_prompt_unavailable" in result.detail


async def test_provider_judge_over_the_local_provider_and_resolution() -> None:
    local = LocalProvider(LocalProviderConfig(template='{{"score": 0.9, "reasoning": "local judge"}}'))
    registry = ProviderRegistry([local])
    judge = ProviderJudge(registry)
    assert judge.resolve("t", "local/local-echo", {}) == ("local", "local-echo")
    assert judge.resolve("t", "unknown-model", {}) == ("local", "unknown-model")
    assert judge.resolve("t", "m", {"judge_provider": "openai"}) == ("openai", "m")
    reply = await judge(
        JudgeRequest(
            tenant_id="t", model="local-echo", messages=[{"role": "user", "content": "x"}], parameters={}
        )
    )
    verdict = parse_judge_answer(reply.text)
    assert verdict is not None and verdict.score == 0.9
    cancel = asyncio.Event()
    cancel.set()
    slow = ProviderJudge(ProviderRegistry([LocalProvider(LocalProviderConfig(latency_s=5))]))
    with pytest.raises(ExperimentRunError):
        await slow(
            JudgeRequest(
                tenant_id="t",
                model="m",
                messages=[{"role": "user", "content": "x"}],
                parameters={},
                cancel=cancel,
            )
        )
