"""The `llm_judge` evaluator: the judge prompt, the answer format, parsing, and a judge over the
provider registry.

Prompt
------
The judge gets two or more chat messages:
1. a system message (`JUDGE_INSTRUCTIONS`) saying how to answer, followed by the evaluator's
   `rubric` under "Grading criteria:" when it has one;
2. the evaluator's prompt: the inline `prompt` as one user message, or the stored prompt version
   (`prompt_id` + `prompt_version`: its messages, or its text template as one user message). In
   every message `{{input}}`, `{{output}}` and `{{expected}}` (spaces inside the braces allowed) are
   replaced by the example's input (JSON), the target's output text and the expected value (text;
   "" when the example has none). Other placeholders stay as written. When the prompt uses none of
   the three, a last user message gives them as `Input:` / `Output:` / `Expected:` sections.

Answer format (asked for)
-------------------------
One JSON object: `{"score": <number from 0 to 1>, "reasoning": "<short explanation>"}`.

Parsing (`parse_judge_answer`), most specific first
---------------------------------------------------
1. A JSON object in the answer (the whole answer, a ```json fence, or the first `{` .. last `}`)
   with a numeric `score` (a bool `pass`/`passed` if there is no score: 1 or 0); `reasoning`,
   `reason` or `explanation` becomes the detail.
2. `score: <n>` / `score = <n>` in the text, optionally `<n>/<m>` or `<n>%`.
3. A verdict word as the first word: PASS / YES / CORRECT -> 1, FAIL / NO / INCORRECT -> 0.
Scales: `n/m` is n divided by m, `n%` is n/100, a bare number above 1 is read out of 10 when it
is at most 10, out of 100 when at most 100 (judges often answer "8" or "85"); the result is
clamped to 0..1. An answer none of this matches fails the evaluator (score 0, detail quotes it);
so does a judge call that fails (detail `judge_error: ...`).

Which provider: `parameters["judge_provider"]` if the run sets it; else a `provider/model` model
name whose prefix is a configured provider; else the one provider whose price table knows the model;
else `default_provider` (the built-in `local`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from ailab_contracts.events.experiments import LlmJudgeEvaluator
from ailab_contracts.events.runs import EvaluatorScore

from ..pricing import PriceTable, default_price_table, estimate_cost
from ..providers import ProviderRequest, ProviderResponse
from .evaluators import MAX_DETAIL, Verdict, comparable_output, output_text
from .ports import ExperimentRunError, Judge, JudgePrompts, JudgeReply, JudgeRequest

JUDGE_INSTRUCTIONS = (
    "You are an impartial evaluator of an AI system's output. Grade the output against the task, "
    "the expected answer (when one is given) and the grading criteria (when given). Answer with "
    "exactly one JSON object and nothing else: "
    '{"score": <number from 0 to 1, 1 = fully correct>, "reasoning": "<at most two sentences>"}'
)
_PLACEHOLDER = re.compile(r"\{\{\s*(input|output|expected)\s*\}\}")
_SCORE = re.compile(
    r"\bscore\b[\"']?\s*(?:is|of)?\s*[:=]?\s*(?P<n>[-+]?\d+(?:\.\d+)?)\s*(?:(?P<pct>%)|/\s*(?P<m>\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)
_PASS_WORDS = {"pass", "passed", "yes", "correct", "true"}
_FAIL_WORDS = {"fail", "failed", "no", "incorrect", "false", "wrong"}
_FIRST_WORD = re.compile(r"^\W*(?P<w>[A-Za-z]+)")


@dataclass(frozen=True)
class JudgeVerdict:
    score: float
    reasoning: str | None


def _scaled(n: float, m: float | None = None, percent: bool = False) -> float | None:
    if m is not None:
        if m <= 0:
            return None
        n = n / m
    elif percent:
        n = n / 100
    elif n > 1:
        n = n / 10 if n <= 10 else n / 100 if n <= 100 else n
    return min(1.0, max(0.0, n))


def _json_object(text: str) -> dict[str, Any] | None:
    candidates = [text.strip()]
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL | re.IGNORECASE)
    if fence:
        candidates.append(fence.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_judge_answer(text: str) -> JudgeVerdict | None:
    """The score (0..1) and reasoning in a judge's answer, or None if it holds neither (see the
    module docstring for the accepted forms)."""
    obj = _json_object(text)
    if obj is not None:
        reasoning = next(
            (str(obj[k]) for k in ("reasoning", "reason", "explanation", "rationale") if obj.get(k)), None
        )
        raw = obj.get("score")
        if isinstance(raw, str):
            try:
                raw = float(raw.strip().rstrip("%")) / (100 if raw.strip().endswith("%") else 1)
            except ValueError:
                raw = None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            scaled = _scaled(float(raw))
            if scaled is not None:
                return JudgeVerdict(scaled, reasoning)
        for key in ("pass", "passed"):
            if isinstance(obj.get(key), bool):
                return JudgeVerdict(1.0 if obj[key] else 0.0, reasoning)
    match = _SCORE.search(text)
    if match:
        m = float(match.group("m")) if match.group("m") else None
        scaled = _scaled(float(match.group("n")), m, bool(match.group("pct")))
        if scaled is not None:
            return JudgeVerdict(scaled, text.strip())
    first = _FIRST_WORD.match(text)
    if first:
        word = first.group("w").lower()
        if word in _PASS_WORDS:
            return JudgeVerdict(1.0, text.strip())
        if word in _FAIL_WORDS:
            return JudgeVerdict(0.0, text.strip())
    return None


def fill(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def build_judge_messages(
    spec: LlmJudgeEvaluator,
    prompt_messages: Sequence[Mapping[str, Any]],
    *,
    input_text: str,
    output: str,
    expected: str,
) -> list[dict[str, Any]]:
    """The messages sent to the judge (see the module docstring)."""
    values = {"input": input_text, "output": output, "expected": expected}
    system = JUDGE_INSTRUCTIONS
    if spec.config.rubric:
        system += "\n\nGrading criteria:\n" + spec.config.rubric
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    uses_placeholders = False
    for message in prompt_messages:
        content = message.get("content")
        if isinstance(content, str):
            uses_placeholders = uses_placeholders or bool(_PLACEHOLDER.search(content))
            content = fill(content, values)
        messages.append({"role": str(message.get("role", "user")), "content": content})
    if not uses_placeholders:
        messages.append(
            {"role": "user", "content": f"Input:\n{input_text}\n\nOutput:\n{output}\n\nExpected:\n{expected}"}
        )
    return messages


@dataclass
class JudgeBinding:
    """The judge as one run uses it: the tenant, the run's parameters, stored prompts read once."""

    tenant_id: str
    parameters: Mapping[str, Any]
    judge: Judge | None
    prompts: JudgePrompts | None
    cancel: asyncio.Event | None = None
    _stored: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def prompt_messages(self, spec: LlmJudgeEvaluator) -> list[dict[str, Any]]:
        config = spec.config
        if config.prompt is not None:
            return [{"role": "user", "content": config.prompt}]
        assert config.prompt_id is not None and config.prompt_version is not None  # the contract says so
        key = (config.prompt_id, config.prompt_version)
        async with self._lock:
            if key not in self._stored:
                if self.prompts is None:
                    raise ExperimentRunError("judge_prompt_unavailable", "no source of stored judge prompts")
                self._stored[key] = await self.prompts.messages(self.tenant_id, *key)
            return self._stored[key]

    async def grade(
        self, spec: LlmJudgeEvaluator, *, inputs: Mapping[str, Any], output: Any, expected: str
    ) -> tuple[EvaluatorScore, Decimal | None]:
        """The judge's score of one output, and what the judge call cost (None: unknown or no call)."""
        if self.judge is None:
            return Verdict(0.0, False, "judge_error: no judge configured").named(spec.name), None
        try:
            prompt = await self.prompt_messages(spec)
        except ExperimentRunError as exc:
            return Verdict(0.0, False, f"judge_error: {exc.code}: {exc.message}").named(spec.name), None
        messages = build_judge_messages(
            spec,
            prompt,
            input_text=json.dumps(dict(inputs), ensure_ascii=False),
            output=output_text(comparable_output(output)),
            expected=expected,
        )
        try:
            reply = await self.judge(
                JudgeRequest(
                    tenant_id=self.tenant_id,
                    model=spec.config.model,
                    messages=messages,
                    parameters=self.parameters,
                    cancel=self.cancel,
                )
            )
        except Exception as exc:  # noqa: BLE001 - a failed judge fails this evaluator, not the run
            code = getattr(exc, "code", None) or type(exc).__name__
            return Verdict(0.0, False, f"judge_error: {code}: {exc}").named(spec.name), None
        verdict = parse_judge_answer(reply.text)
        if verdict is None:
            detail = f"judge answer not understood: {reply.text[: MAX_DETAIL - 40]!r}"
            return Verdict(0.0, False, detail).named(spec.name), reply.cost_usd
        passed = verdict.score >= spec.config.pass_threshold
        return Verdict(verdict.score, passed, verdict.reasoning).named(spec.name), reply.cost_usd


# --- a judge over the provider registry -----------------------------------------------------------


class CompletesChats(Protocol):
    """What the judge needs of `providers.ProviderRegistry`."""

    @property
    def names(self) -> list[str]: ...

    async def complete(self, req: ProviderRequest) -> ProviderResponse: ...


class ProviderJudge:
    """`Judge` over the provider registry: temperature 0, one non-streamed call, priced with the
    price table (cost None when the model has no price)."""

    def __init__(
        self,
        providers: CompletesChats,
        *,
        default_provider: str = "local",
        price_table: Callable[[str], PriceTable] | None = None,
        timeout_s: float | None = 60.0,
        max_tokens: int = 400,
    ) -> None:
        self._providers = providers
        self._default = default_provider
        self._prices = price_table or (lambda _tenant: default_price_table())
        self._timeout = timeout_s
        self._max_tokens = max_tokens

    def resolve(self, tenant_id: str, model: str, parameters: Mapping[str, Any]) -> tuple[str, str]:
        """(provider, model) for a judge model name (see the module docstring)."""
        names = self._providers.names
        chosen = parameters.get("judge_provider")
        if isinstance(chosen, str) and chosen:
            return chosen, model
        prefix, sep, rest = model.partition("/")
        if sep and prefix in names and rest:
            return prefix, rest
        table = self._prices(tenant_id)
        known = [name for name in names if (m := table.lookup(name, model)) is not None and m.key != "*"]
        if len(known) == 1:
            return known[0], model
        return self._default, model

    async def __call__(self, request: JudgeRequest) -> JudgeReply:
        provider, model = self.resolve(request.tenant_id, request.model, request.parameters)
        call = self._providers.complete(
            ProviderRequest(
                provider=provider,
                model=model,
                messages=list(request.messages),
                temperature=0.0,
                max_tokens=self._max_tokens,
                timeout_s=self._timeout,
                tenant_id=request.tenant_id,
                metadata={"purpose": "experiment_judge"},
            )
        )
        response = await _until_cancelled(call, request.cancel)
        cost = estimate_cost(provider, model, response.usage, table=self._prices(request.tenant_id))
        return JudgeReply(text=response.text, cost_usd=cost.total if response.usage_reported else None)


async def _until_cancelled(call: Any, cancel: asyncio.Event | None) -> ProviderResponse:
    task: asyncio.Task[ProviderResponse] = asyncio.ensure_future(call)
    if cancel is None:
        return await task
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        raise ExperimentRunError("cancelled", "the run was cancelled during the judge call")
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
