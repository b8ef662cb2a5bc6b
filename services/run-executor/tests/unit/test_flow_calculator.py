"""The `calculator` built-in: exact decimal arithmetic by a parser, never `eval`; hostile input is
refused quickly with `calculator_error`."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from run_executor.engine.calculator import CalculatorError, as_json_number, evaluate, exact_text
from run_executor.engine.tools import ToolError, ToolRunner, ToolSpec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", "7"),
        ("(2 + 3) * 4.5", "22.5"),
        ("0.1 + 0.2", "0.3"),  # exact, unlike floats
        ("2 ** 10", "1024"),
        ("2 ** 3 ** 2", "512"),  # right-associative
        ("-2 ** 2", "-4"),  # unary minus binds looser than **
        ("(-2) ** 2", "4"),
        ("7 // 2", "3"),
        ("7 % 3", "1"),
        ("10 / 4", "2.5"),
        ("2 ** -1", "0.5"),
        ("1e3 + .5", "1000.5"),
        ("--3", "3"),
        ("  42  ", "42"),
    ],
)
def test_arithmetic(expression: str, value: str) -> None:
    assert evaluate(expression) == Decimal(value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('id')",
        "os.system",
        "open('/etc/passwd')",
        "2 + x",
        "abs(-1)",
        "[1, 2]",
        "1; 2",
        "lambda: 1",
        "2 +",
        "(1 + 2",
        "1 + 2)",
        "",
        "   ",
        "1 / 0",
        "5 % 0",
        "0 ** -1",
        "(-8) ** 0.5",
        "9 ** 9 ** 9",  # would take forever and all memory: the exponent is bounded
        "10 ** 10001",
        "(" * 100 + "1" + ")" * 100,  # nesting is bounded
        "1" + "+1" * 600,  # length is bounded
        "1_000",
        "0x10",
        "1 & 2",
    ],
)
def test_anything_else_is_refused(expression: str) -> None:
    with pytest.raises(CalculatorError):
        evaluate(expression)


def test_hostile_inputs_are_refused_fast() -> None:
    started = time.monotonic()
    for expression in ("9 ** 9 ** 9", "-" * 999 + "1", "(" * 64 + "1" + ")" * 64, "2 ** 9999 * 2 ** 9999"):
        try:
            evaluate(expression)
        except CalculatorError:
            pass
    assert time.monotonic() - started < 1.0


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12))
def test_agrees_with_integer_arithmetic(a: int, b: int) -> None:
    assert evaluate(f"({a}) + ({b}) * 3") == a + b * 3
    if b:
        assert evaluate(f"({a}) // ({b})") == Decimal(a) // Decimal(b)  # Decimal semantics: truncates


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-*/%(). e", max_size=60))
def test_random_text_never_raises_anything_but_calculator_error(text: str) -> None:
    try:
        evaluate(text)
    except CalculatorError:
        pass


def test_json_results() -> None:
    assert as_json_number(Decimal("22.5")) == 22.5 and as_json_number(Decimal("7")) == 7
    assert as_json_number(Decimal("1E+400")) is None and exact_text(Decimal("1E+400")) == "1E+400"
    assert exact_text(Decimal("0.30")) == "0.3"


async def test_the_calculator_tool() -> None:
    runner = ToolRunner(_NoSecrets())
    spec = ToolSpec.for_builtin("calculator")
    result = await runner.call("t", spec, {"expression": "2 * (3 + 4)"})
    assert result == {"expression": "2 * (3 + 4)", "result": 14, "exact": "14"}
    with pytest.raises(ToolError) as refused:
        await runner.call("t", spec, {"expression": "__import__('os')"})
    assert refused.value.code == "calculator_error"
    with pytest.raises(ToolError) as missing:
        await runner.call("t", spec, {})
    assert missing.value.code == "tool_invalid_arguments"
    await runner.aclose()


class _NoSecrets:
    async def resolve(self, tenant_id: str | None, secret_ref: str) -> str:
        raise KeyError(secret_ref)
