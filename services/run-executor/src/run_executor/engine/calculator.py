"""The `calculator` built-in: a small recursive-descent parser for arithmetic, evaluated in `Decimal`.

Grammar (no names, no calls, no attribute access: nothing but numbers and operators)::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/" | "//" | "%") unary)*
    unary  := ("+" | "-") unary | power
    power  := atom ("**" unary)?          # right-associative, binds tighter than unary minus on its left
    atom   := NUMBER | "(" expr ")"

Bounded so that no input can exhaust the process: at most 1000 characters and 64 levels of nesting,
exponents within ±10000, results within 1e±10000 (Decimal context), and 34 significant digits.
"""

from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass
from decimal import Decimal

MAX_LENGTH = 1000
MAX_DEPTH = 64
MAX_EXPONENT = 10_000

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(\*\*|//|[-+*/%()]))")


class CalculatorError(ValueError):
    """The expression is not valid arithmetic or cannot be evaluated (division by zero, overflow)."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "num" | "op" | "end"
    text: str
    pos: int


def _tokens(expression: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(expression):
        if expression[pos:].strip() == "":
            break
        match = _TOKEN.match(expression, pos)
        if match is None:
            raise CalculatorError(f"unexpected character {expression[pos:].lstrip()[0]!r} at {pos}")
        if match.group(1) is not None:
            out.append(_Token("num", match.group(1), match.start(1)))
        else:
            out.append(_Token("op", match.group(2), match.start(2)))
        pos = match.end()
    out.append(_Token("end", "", len(expression)))
    return out


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._i = 0
        self._depth = 0

    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _take(self) -> _Token:
        token = self._tokens[self._i]
        self._i += 1
        return token

    def _enter(self) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise CalculatorError(f"the expression nests deeper than {MAX_DEPTH} levels")

    def parse(self) -> Decimal:
        value = self.expr()
        token = self._peek()
        if token.kind != "end":
            raise CalculatorError(f"unexpected {token.text!r} at {token.pos}")
        return value

    def expr(self) -> Decimal:
        value = self.term()
        while self._peek().text in ("+", "-") and self._peek().kind == "op":
            op = self._take().text
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> Decimal:
        value = self.unary()
        while self._peek().kind == "op" and self._peek().text in ("*", "/", "//", "%"):
            op = self._take().text
            right = self.unary()
            if op == "*":
                value = value * right
            else:
                if right == 0:
                    raise CalculatorError("division by zero")
                if op == "/":
                    value = value / right
                elif op == "//":
                    value = value // right
                else:
                    value = value % right
        return value

    def unary(self) -> Decimal:
        token = self._peek()
        if token.kind == "op" and token.text in ("+", "-"):
            self._take()
            self._enter()
            try:
                value = self.unary()
            finally:
                self._depth -= 1
            return -value if token.text == "-" else value
        return self.power()

    def power(self) -> Decimal:
        base = self.atom()
        if self._peek().kind == "op" and self._peek().text == "**":
            self._take()
            self._enter()
            try:
                exponent = self.unary()
            finally:
                self._depth -= 1
            if abs(exponent) > MAX_EXPONENT:
                raise CalculatorError(f"exponents are limited to ±{MAX_EXPONENT}")
            if base == 0 and exponent < 0:
                raise CalculatorError("division by zero")
            if base < 0 and exponent != exponent.to_integral_value():
                raise CalculatorError("a negative number has no real fractional power")
            return base**exponent
        return base

    def atom(self) -> Decimal:
        token = self._take()
        if token.kind == "num":
            return Decimal(token.text)
        if token.kind == "op" and token.text == "(":
            self._enter()
            try:
                value = self.expr()
            finally:
                self._depth -= 1
            closing = self._take()
            if closing.text != ")":
                raise CalculatorError(f"missing ')' at {closing.pos}")
            return value
        if token.kind == "end":
            raise CalculatorError("the expression ends too early")
        raise CalculatorError(f"unexpected {token.text!r} at {token.pos}")


def evaluate(expression: str) -> Decimal:
    """The value of an arithmetic expression, or CalculatorError."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("the expression is empty")
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"the expression is longer than {MAX_LENGTH} characters")
    with decimal.localcontext() as ctx:
        ctx.prec = 34
        ctx.Emax = MAX_EXPONENT
        ctx.Emin = -MAX_EXPONENT
        ctx.traps[decimal.Inexact] = False
        ctx.traps[decimal.Rounded] = False
        try:
            value = _Parser(_tokens(expression)).parse()
            return +value  # rounds to the context precision
        except CalculatorError:
            raise
        except (decimal.DecimalException, ArithmeticError) as exc:
            raise CalculatorError(f"cannot evaluate: {type(exc).__name__}") from None


def as_json_number(value: Decimal) -> int | float | None:
    """An int when integral and within 64 bits, else the nearest float; None when no finite JSON
    number can hold it (use `exact_text` then)."""
    if value == value.to_integral_value() and abs(value) < Decimal(2) ** 63:
        return int(value)
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def exact_text(value: Decimal) -> str:
    """The exact result as fixed-point text (scientific notation for huge or tiny magnitudes)."""
    return format(value.normalize(), "f") if abs(value.adjusted()) < 40 else str(value)
