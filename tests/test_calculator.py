"""The agent's calculator: known values, clear refusals, and a fuzz that nothing but CalculatorError escapes."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.tools.calculator import MAX_INPUT_CHARS, CalculatorError, calculate, make_calculator_tool

CASES = [
    pytest.param("2 + 2", "4", id="add"),
    pytest.param("0.1 + 0.2", "0.3", id="exact-decimal-sum"),
    pytest.param("1.1 * 1.1", "1.21", id="exact-decimal-product"),
    pytest.param("10 / 4", "2.5", id="true-division"),
    pytest.param("1 / 3", "0.333333333333333", id="repeating-decimal"),
    pytest.param("7 // 2", "3", id="floor-division"),
    pytest.param("-7 // 2", "-4", id="floor-division-negative"),
    pytest.param("7 % 3", "1", id="modulo"),
    pytest.param("7 % (-3)", "-2", id="modulo-negative-in-parens"),
    pytest.param("2 ** 10", "1024", id="power"),
    pytest.param("2 ^ 10", "1024", id="caret-is-power"),
    pytest.param("2 ** -2", "0.25", id="negative-exponent"),
    pytest.param("-2 ** 2", "-4", id="power-binds-tighter-than-minus"),
    pytest.param("(-2) ** 2", "4", id="parenthesised-base"),
    pytest.param("2 ** 3 ** 2", "512", id="power-right-associative"),
    pytest.param("--3", "3", id="double-unary"),
    pytest.param("+-+3", "-3", id="mixed-unary"),
    pytest.param("(1.5 + 2) * 3^2", "31.5", id="parentheses"),
    pytest.param("15% of 2400", "360", id="percent-of"),
    pytest.param("2400 * 15%", "360", id="percent-postfix"),
    pytest.param("2400 / 15%", "16000", id="percent-binds-to-its-number"),
    pytest.param("12.5%", "0.125", id="percent-alone"),
    pytest.param("50% - 10", "-9.5", id="percent-then-minus"),
    pytest.param("(100 + 20)% of 50", "60", id="percent-of-group"),
    pytest.param("sqrt(16)", "4", id="sqrt-exact"),
    pytest.param("sqrt(2.25)", "1.5", id="sqrt-exact-decimal"),
    pytest.param("sqrt(2)", "1.4142135623731", id="sqrt-irrational"),
    pytest.param("log(1000)", "3", id="log-base-10"),
    pytest.param("log(8, 2)", "3", id="log-with-base"),
    pytest.param("ln(e)", "1", id="ln"),
    pytest.param("exp(0)", "1", id="exp"),
    pytest.param("sin(pi / 2)", "1", id="sin"),
    pytest.param("cos(pi)", "-1", id="cos"),
    pytest.param("tan(pi / 4)", "1", id="tan"),
    pytest.param("abs(-3.5)", "3.5", id="abs"),
    pytest.param("round(2.675, 2)", "2.68", id="round-decimal-exact"),
    pytest.param("round(7.5)", "8", id="round-half-even-up"),
    pytest.param("round(1/3, 4)", "0.3333", id="round-digits"),
    pytest.param("floor(-2.5)", "-3", id="floor"),
    pytest.param("ceil(2.1)", "3", id="ceil"),
    pytest.param("factorial(20)", "2432902008176640000", id="factorial"),
    pytest.param("pi", "3.14159265358979", id="pi"),
    pytest.param("1.5e3 + .5", "1500.5", id="scientific-literal"),
    pytest.param("2 × 3 ÷ 4 − 1", "0.5", id="unicode-operators"),
    pytest.param("1e-300 * 1e-300", "1e-600", id="tiny-but-exact"),
    pytest.param("1000000 * 1000000", "1000000000000", id="large-integer"),
    pytest.param("1.05 ** 30", "4.32194237515066", id="compound-interest"),
    pytest.param("1.0001 ** 10000", "2.71814592682493", id="too-many-digits-falls-back-to-float"),
    pytest.param("  1 +\n 1  ", "2", id="whitespace"),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_known_values(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


def test_big_integers_stay_exact() -> None:
    assert calculate("2 ** 1000") == str(2**1000)
    assert calculate("factorial(100)") == str(__import__("math").factorial(100))


REFUSED = [
    pytest.param("9**9**9**9", "too large", id="power-tower"),
    pytest.param("10**10**10", "too large", id="huge-power"),
    pytest.param("factorial(401)", "limited to 400", id="factorial-cap"),
    pytest.param("factorial(2.5)", "whole number", id="factorial-fraction"),
    pytest.param("factorial(-1)", "negative", id="factorial-negative"),
    pytest.param("exp(1000)", "too large", id="exp-overflow"),
    pytest.param("1e5000", "too large", id="huge-literal"),
    pytest.param("1 / 0", "division by zero", id="division-by-zero"),
    pytest.param("5 % 0", "division by zero", id="modulo-by-zero"),
    pytest.param("0 ** -1", "division by zero", id="zero-negative-power"),
    pytest.param("sqrt(-1)", "negative", id="sqrt-negative"),
    pytest.param("ln(0)", "non-positive", id="log-zero"),
    pytest.param("log(8, 1)", "base 1", id="log-base-one"),
    pytest.param("(-8) ** (1/3)", "fractional power", id="complex-result"),
    pytest.param("__import__('os')", "unexpected character", id="dunder-import"),
    pytest.param("().__class__", "unexpected character", id="attribute-access"),
    pytest.param("open('x')", "unexpected character", id="quotes"),
    pytest.param("exec(1)", "unknown function", id="exec"),
    pytest.param("x + 1", "unknown name", id="variable"),
    pytest.param("sqrt", "is a function", id="function-without-call"),
    pytest.param("2(3)", "write *", id="implicit-multiplication"),
    pytest.param("sqrt(1, 2)", "takes 1 argument", id="too-many-arguments"),
    pytest.param("1, 2", "a list of values", id="comma"),
    pytest.param("3 > 2", "unexpected character", id="comparison"),
    pytest.param("", "empty", id="empty"),
    pytest.param("%", "percent sign", id="lone-percent"),
    pytest.param("(" * 1000, "too long", id="parens-1000"),
    pytest.param("-" * 100000, "too long", id="minus-100000"),
    pytest.param("1+" * 200000, "too long", id="plus-chain-200000"),
    pytest.param("(" * 41 + "1" + ")" * 41, "nested parentheses", id="paren-depth"),
    pytest.param("1" + "%" * 60, "percent signs", id="percent-chain"),
    pytest.param("-" * 499 + "1", "nested too deeply", id="unary-chain"),
    pytest.param("2 +", "cannot parse", id="incomplete"),
]


@pytest.mark.parametrize(("expression", "message"), REFUSED)
def test_refusals_say_why(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message):
        calculate(expression)


def test_length_is_checked_before_parsing() -> None:
    # At the limit the parser still copes; one more character is refused without parsing.
    assert calculate("1+" * ((MAX_INPUT_CHARS - 1) // 2) + "1") == str((MAX_INPUT_CHARS - 1) // 2 + 1)
    with pytest.raises(CalculatorError, match="too long"):
        calculate("1" * (MAX_INPUT_CHARS + 1))


def test_tool_returns_errors_as_observations() -> None:
    tool = make_calculator_tool()
    assert tool.name == "calculator"
    assert tool.invoke({"expression": "15% of 2400"}) == "360"
    observation = tool.invoke({"expression": "1/0"})
    assert observation.startswith("Error:") and "division by zero" in observation


# --- fuzz -------------------------------------------------------------------------------------------

_FORBIDDEN_EVENTS = ("import", "exec", "open", "subprocess", "os.system", "os.exec", "os.spawn",
                     "os.posix_spawn", "os.fork", "os.kill", "socket", "ctypes", "builtins.input")
_armed = threading.local()
_events: list[str] = []
_hook_installed = False

# Generous against a noisy shared machine; the 100 ms target is measured by bench/bench_calculator.py.
PER_CALL_BOUND_S = 1.0


def _audit(event: str, _args: object) -> None:
    if getattr(_armed, "on", False) and event.startswith(_FORBIDDEN_EVENTS):
        _events.append(event)


@pytest.fixture()
def audited() -> Iterator[list[str]]:
    """Record forbidden audit events raised while `_checked_calculate` runs (hooks cannot be removed)."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    _events.clear()
    yield _events


def _checked_calculate(expression: str) -> str | None:
    """Calculate under the audit hook; only CalculatorError may escape, and the call must be quick."""
    started = time.perf_counter()
    _armed.on = True
    try:
        return calculate(expression)
    except CalculatorError:
        return None
    finally:
        _armed.on = False
        elapsed = time.perf_counter() - started
        assert elapsed < PER_CALL_BOUND_S, f"{expression[:80]!r} took {elapsed:.3f} s"
        assert not _events, f"{expression[:80]!r} raised audit events {_events}"


_numbers = st.one_of(
    st.integers(min_value=0, max_value=10**30).map(str),
    st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=6).map(str),
    st.sampled_from(["0", "1", "9", "0.1", ".5", "1e308", "1e-308", "1e999", "1e1001", "2.5e3", "pi", "e"]),
)
_FUNCTION_NAMES = ["sqrt", "log", "ln", "exp", "sin", "cos", "tan", "abs", "round", "floor", "ceil", "factorial"]


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "^"]), children).map(" ".join),
        st.tuples(st.sampled_from(["-", "+"]), children).map("".join),
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"{c}%"),
        st.tuples(children, children).map(lambda t: f"{t[0]}% of {t[1]}"),
        st.tuples(st.sampled_from(_FUNCTION_NAMES), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["log", "round"]), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
    )


grammar_expressions = st.recursive(_numbers, _combine, max_leaves=40)

_HOSTILE = ["__import__('os')", "().__class__", "(" * 1000, "-" * 100000, "1+" * 200000, "9**9**9**9",
            "(1).__class__.__bases__[0].__subclasses__()", "lambda: 1", "[1] * 10**9", "'a' * 10**9",
            "exec('1')", "eval('1')", "open('/etc/passwd')", "1 if 1 else 2", "f'{1}'", "\x00", "1;1",
            "factorial(factorial(10))", "2**2**2**2**2**2", "10**-10**10", "(" * 199 + "1" + ")" * 199]
raw_texts = st.one_of(
    st.text(alphabet=st.sampled_from(list("0123456789.eE+-*/%^(),_ ofpisqrtlnxabcg'\"[]{}:;=<>!~&|@#\\")),
            max_size=600),
    st.text(max_size=600),  # any unicode
    st.sampled_from(_HOSTILE),
)


def _fuzz(strategy: st.SearchStrategy[str], examples: int) -> int:
    calls = 0

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(expression: str) -> None:
        nonlocal calls
        calls += 1
        result = _checked_calculate(expression)
        if result is not None:
            float(result)  # every answer is a plain number

    run()
    return calls


def test_fuzz_grammar_built(audited: list[str]) -> None:
    assert _fuzz(grammar_expressions, 5_000) >= 5_000


def test_fuzz_raw_text_and_hostile(audited: list[str]) -> None:
    for expression in _HOSTILE:
        assert _checked_calculate(expression) is None
    assert _fuzz(raw_texts, 5_000) >= 5_000


def test_audit_hook_would_see_an_import(audited: list[str]) -> None:
    # Guards the fuzz against a silently broken hook: an import while armed is recorded.
    _armed.on = True
    try:
        sys.modules.pop("colorsys", None)
        import colorsys  # noqa: F401
    finally:
        _armed.on = False
    assert "import" in _events and "open" in _events
    _events.clear()


# Exact integer arithmetic agrees with Python's own integers.
_int_terms: st.SearchStrategy[tuple[str, int]] = st.recursive(
    st.integers(min_value=0, max_value=10**6).map(lambda n: (str(n), n)),
    lambda children: st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*"]), children).map(
            lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})",
                       {"+": t[0][1] + t[2][1], "-": t[0][1] - t[2][1], "*": t[0][1] * t[2][1]}[t[1]])
        ),
        children.map(lambda c: (f"-{c[0]}", -c[1])),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, database=None)
@given(_int_terms)
def test_integer_arithmetic_matches_python(term: tuple[str, int]) -> None:
    text, value = term
    assert Fraction(calculate(text)) == value
