"""A safe calculator for the agent: arithmetic over an allowlisted AST, exact where the input is decimal.

The text is checked (length, characters, nesting) before `ast.parse` sees it, because the parser itself
crashes on hostile input (`"-" * 100000`, `"1+" * 200000`). Numbers are evaluated as `Fraction`s, so
`0.1 + 0.2` is `0.3`; functions like `sqrt` or `sin` fall back to floats. Every operation is checked
against a size bound *before* it runs: a thread cannot interrupt CPU-bound work like `9**9**9**9`.
One module (over 400 lines) on purpose: the pre-parse checks, the allowlist and the bounded evaluator are one
safety argument and are reviewed together.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool


__all__ = ["MAX_INPUT_CHARS", "CalculatorError", "calculate", "make_calculator_tool"]

MAX_INPUT_CHARS = 500
MAX_PAREN_DEPTH = 40
MAX_AST_DEPTH = 300  # a chain of 250 additions nests that deep; the parser copes with it at 500 chars
MAX_BITS = 3300  # about 1000 decimal digits, for numerators and denominators alike
MAX_LITERAL_EXPONENT = 1000  # `1e999999999` would build a huge integer before any other check
MAX_FACTORIAL = 400
MAX_ROUND_DIGITS = 100
MAX_DECIMAL_CHARS = 40  # longer exact decimals are shown in scientific notation
SIGNIFICANT_DIGITS = 15

Number = Fraction | float


class CalculatorError(ValueError):
    """The expression is invalid, unsupported or too large; the message is safe to show."""


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z][A-Za-z0-9]*)
  | (?P<op>\*\*|//|[-+*/%^(),])
    """,
    re.VERBOSE,
)
_UNICODE_OPS = str.maketrans({"×": "*", "·": "*", "÷": "/", "−": "-", "–": "-"})
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result as text; raises CalculatorError."""
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be text")
    if len(expression) > MAX_INPUT_CHARS:
        raise CalculatorError(f"the expression is too long (at most {MAX_INPUT_CHARS} characters)")
    text = expression.translate(_UNICODE_OPS).strip()
    if not text:
        raise CalculatorError("the expression is empty")
    source, numbers = _prepare(text)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise CalculatorError(f"cannot parse {expression.strip()!r}: not a valid arithmetic expression") from None
    try:
        value = _Evaluator(numbers).eval(tree.body, 0)
    except CalculatorError:
        raise
    except RecursionError:  # the depth cap should come first; a deep caller stack may not leave room
        raise CalculatorError("the expression is nested too deeply") from None
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large") from None
    except (ValueError, ArithmeticError) as exc:
        raise CalculatorError(f"math error: {exc}") from None
    return _format(value)


def _prepare(text: str) -> tuple[str, list[Fraction]]:
    """Tokenize, resolve percentages and replace number literals by placeholders; returns Python source."""
    tokens: list[str] = []
    numbers: list[Fraction] = []
    depth = 0
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise CalculatorError(f"unexpected character {text[pos]!r} at position {pos + 1}")
        pos = match.end()
        kind, value = match.lastgroup, match.group()
        if kind == "space":
            continue
        if kind == "number":
            numbers.append(_parse_number(value))
            # Placeholders start with "_", which user input cannot contain, so they cannot be forged.
            tokens.append(f"_n{len(numbers) - 1}")
            continue
        if value == "(":
            depth += 1
            if depth > MAX_PAREN_DEPTH:
                raise CalculatorError(f"too many nested parentheses (at most {MAX_PAREN_DEPTH})")
        elif value == ")":
            depth -= 1
        elif value == "^":
            value = "**"  # people and models write powers this way; XOR is not on offer
        tokens.append(value)
    numbers.append(Fraction(100))
    tokens = _resolve_percent(tokens, f"_n{len(numbers) - 1}")
    # Each percentage adds a pair of parentheses: check the depth again (`1%%%%...` nests 499 deep).
    depth = deepest = 0
    for token in tokens:
        depth += (token == "(") - (token == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_PAREN_DEPTH:
        raise CalculatorError(f"too many nested parentheses or percent signs (at most {MAX_PAREN_DEPTH})")
    return " ".join(tokens), numbers


def _parse_number(literal: str) -> Fraction:
    mantissa, _, exponent = literal.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_LITERAL_EXPONENT:
        raise CalculatorError(f"the number {literal} is too large or too small")
    mantissa = mantissa.removesuffix(".")
    return Fraction(f"{mantissa}e{exponent or 0}")


def _resolve_percent(tokens: list[str], hundred: str) -> list[str]:
    """Turn a postfix percent into `(x / 100)`; `%` between two operands stays the modulo operator.

    `15% of 2400` -> `(15/100) * 2400`, `2400 * 15%` -> `2400 * (15/100)`, `7 % 3` -> modulo.
    A `%` followed by a sign is a percentage (`50% - 10`): modulo by a negative number needs
    parentheses, `7 % (-3)`.
    """
    out: list[str] = []
    after_percent = False
    for i, token in enumerate(tokens):
        if token == "of" and after_percent:
            out.append("*")
            after_percent = False
            continue
        after_percent = False
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token != "%" or following not in _PERCENT_FOLLOWERS:
            out.append(token)
            continue
        start = _operand_start(out)
        if start is None:
            raise CalculatorError("a percent sign must follow a number or a parenthesised expression")
        out[start:] = ["(", *out[start:], "/", hundred, ")"]
        after_percent = True
    return out


_PERCENT_FOLLOWERS = {None, ")", ",", "*", "/", "//", "**", "%", "+", "-", "of"}


def _operand_start(out: list[str]) -> int | None:
    """Index in `out` where the operand ending at `out[-1]` starts (a number, a constant or a (group))."""
    if not out:
        return None
    last = out[-1]
    if last == ")":
        depth = 0
        for j in range(len(out) - 1, -1, -1):
            if out[j] == ")":
                depth += 1
            elif out[j] == "(":
                depth -= 1
                if depth == 0:
                    # `sqrt(4)%`: the function name belongs to the operand.
                    if j > 0 and out[j - 1].isidentifier():
                        return j - 1
                    return j
        return None
    if last.isidentifier():
        return len(out) - 1
    return None


def _as_int(value: Number, what: str) -> int:
    if isinstance(value, Fraction) and value.denominator == 1:
        return value.numerator
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise CalculatorError(f"{what} must be a whole number")


def _to_float(value: Number) -> float:
    try:
        return float(value)
    except OverflowError:
        raise CalculatorError("the number is too large for this function") from None


def _fraction_size(value: Fraction) -> int:
    return max(value.numerator.bit_length(), value.denominator.bit_length())


def _check(value: Number | int) -> Number:
    """Normalise a result and refuse what is too large or not a real number."""
    if isinstance(value, int):
        value = Fraction(value)
    if isinstance(value, Fraction):
        if _fraction_size(value) <= MAX_BITS:
            return value
        # Too many digits to keep exact (`1.0001**5000`): fall back to a float while one can hold it.
        try:
            approx = float(value)
        except OverflowError:
            raise CalculatorError("the result is too large") from None
        if approx == 0:
            raise CalculatorError("the result is too close to zero to show")
        value = approx
    if isinstance(value, complex):
        raise CalculatorError("the result is not a real number")
    if not math.isfinite(value):
        raise CalculatorError("the result is too large" if math.isinf(value) else "the result is undefined")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, Fraction) and isinstance(exponent, Fraction) and exponent.denominator == 1:
        n = exponent.numerator
        if base == 0:
            if n < 0:
                raise ZeroDivisionError
            return Fraction(0 if n else 1)
        magnitude = max(abs(base.numerator), base.denominator)
        if magnitude == 1:
            return base ** (abs(n) % 2)  # (+-1)**n only depends on the parity of n
        if abs(n) * math.log2(magnitude) <= MAX_BITS:
            return base**n
        # Estimated before computing: `9**387420489` exactly would run for minutes. Floats overflow fast.
    b, x = _to_float(base), _to_float(exponent)
    if b < 0 and not x.is_integer():
        raise CalculatorError("a negative number cannot be raised to a fractional power")
    result = math.pow(b, x)
    if result == 0 and b != 0:
        raise CalculatorError("the result is too close to zero to show")
    return result


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculatorError("square root of a negative number")
    if isinstance(x, Fraction):
        # Exact when numerator and denominator are perfect squares: sqrt(2.25) is 1.5.
        num, den = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if num * num == x.numerator and den * den == x.denominator:
            return Fraction(num, den)
    return math.sqrt(_to_float(x))


def _log_with(x: Number, log: Callable[[float], float]) -> float:
    if x <= 0:
        raise CalculatorError("logarithm of a non-positive number")
    if isinstance(x, float):
        return log(x)
    # math.log accepts integers of any size, so log(n/d) = log(n) - log(d) never overflows.
    return log(x.numerator) - log(x.denominator)  # type: ignore[arg-type]


def _log(x: Number, base: Number | None = None) -> Number:
    if base is None:
        return _log_with(x, math.log10)
    if base == 1:
        raise CalculatorError("logarithm to base 1")
    return _log_with(x, math.log) / _log_with(base, math.log)


def _ln(x: Number) -> Number:
    return _log_with(x, math.log)


def _round(x: Number, digits: Number | None = None) -> Number:
    if digits is None:
        return Fraction(round(x))
    n = _as_int(digits, "the number of digits")
    if abs(n) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round() takes at most {MAX_ROUND_DIGITS} digits")
    return round(x, n)


def _factorial(x: Number) -> Number:
    n = _as_int(x, "the factorial's argument")
    if n < 0:
        raise CalculatorError("factorial of a negative number")
    if n > MAX_FACTORIAL:
        raise CalculatorError(f"factorial is limited to {MAX_FACTORIAL}")
    return Fraction(math.factorial(n))


def _floatfn(fn: Callable[[float], float]) -> Callable[[Number], Number]:
    return lambda x: fn(_to_float(x))


def _exact_int(fn: Callable[[Number], int]) -> Callable[[Number], Number]:
    return lambda x: Fraction(fn(x)) if isinstance(x, Fraction) else float(fn(x))


# name -> (function, minimum arguments, maximum arguments)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (_sqrt, 1, 1),
    "log": (_log, 1, 2),
    "ln": (_ln, 1, 1),
    "exp": (_floatfn(math.exp), 1, 1),
    "sin": (_floatfn(math.sin), 1, 1),
    "cos": (_floatfn(math.cos), 1, 1),
    "tan": (_floatfn(math.tan), 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (_exact_int(math.floor), 1, 1),
    "ceil": (_exact_int(math.ceil), 1, 1),
    "factorial": (_factorial, 1, 1),
}


class _Evaluator:
    """Walks the allowlisted node types; anything else is refused with a clear message."""

    def __init__(self, numbers: list[Fraction]) -> None:
        self._numbers = numbers

    def eval(self, node: ast.AST, depth: int) -> Number:
        if depth > MAX_AST_DEPTH:
            raise CalculatorError("the expression is nested too deeply")
        if isinstance(node, ast.BinOp):
            op = _BINARY.get(type(node.op))
            if op is None:
                raise CalculatorError("unsupported operator")
            right = self.eval(node.right, depth + 1)  # right first: `9**9**9**9` is refused sooner
            left = self.eval(node.left, depth + 1)
            return _check(op(left, right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            value = self.eval(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise CalculatorError(f"unsupported syntax: {_describe(node)}")

    def _name(self, name: str) -> Number:
        if name.startswith("_n") and name[2:].isdigit():
            return _check(self._numbers[int(name[2:])])
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in _FUNCTIONS:
            raise CalculatorError(f"{name} is a function: write {name}(x)")
        raise CalculatorError(f"unknown name {name!r}; known: {', '.join([*_CONSTANTS, *_FUNCTIONS])}")

    def _call(self, node: ast.Call, depth: int) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id.startswith("_n"):
            raise CalculatorError("write * for multiplication: 2*(3), not 2(3)")
        if node.func.id not in _FUNCTIONS:
            raise CalculatorError(f"unknown function {node.func.id!r}; functions: {', '.join(_FUNCTIONS)}")
        name = node.func.id
        fn, least, most = _FUNCTIONS[name]
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise CalculatorError(f"{name}() takes plain arguments")
        if not least <= len(node.args) <= most:
            count = str(least) if least == most else f"{least} or {most}"
            raise CalculatorError(f"{name}() takes {count} argument(s)")
        args = [self.eval(arg, depth + 1) for arg in node.args]
        return _check(fn(*args))


def _divide(a: Number, b: Number) -> Number:
    return a / b


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: _divide,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: _power,
}


def _describe(node: ast.AST) -> str:
    names = {ast.Compare: "comparison", ast.BoolOp: "and/or", ast.Tuple: "a list of values (a comma?)",
             ast.Attribute: "attribute access", ast.Constant: "a literal", ast.Subscript: "indexing"}
    return names.get(type(node), type(node).__name__)


def _format(value: Number) -> str:
    """Exact decimals where they terminate, otherwise 15 significant digits."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return _trim(format(value, f".{SIGNIFICANT_DIGITS}g"))
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den == 1:
        places = max(twos, fives)
        scaled = abs(value.numerator) * (10**places // value.denominator)
        digits = str(scaled).rjust(places + 1, "0")
        text = f"{'-' if value < 0 else ''}{digits[:-places]}.{digits[-places:]}"
        if len(text) <= MAX_DECIMAL_CHARS:
            return text
    with localcontext() as ctx:
        ctx.prec = SIGNIFICANT_DIGITS
        approx = Decimal(value.numerator) / Decimal(value.denominator)
    return _trim(format(approx.normalize(), "g"))


def _trim(text: str) -> str:
    mantissa, sep, exponent = text.partition("e") if "e" in text else text.partition("E")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}" if sep else mantissa


_DESCRIPTION = (
    "Evaluate an arithmetic expression exactly. Operators: + - * / // % ** (or ^), parentheses. "
    "Functions: sqrt, log (base 10; log(x, b) for base b), ln, exp, sin, cos, tan (radians), abs, "
    "round(x[, digits]), floor, ceil, factorial. Constants: pi, e. Percentages: '15% of 2400', '2400 * 15%'. "
    "Input: one expression, no variables or words, e.g. '(1.5 + 2) * 3^2'."
)


def make_calculator_tool() -> BaseTool:
    """The calculator as a LangChain tool named `calculator`; errors come back as observations."""

    def calculator(expression: str) -> str:
        try:
            return calculate(expression)
        except CalculatorError as exc:
            return f"Error: {exc}"

    from langchain_core.tools import StructuredTool

    return StructuredTool.from_function(calculator, name="calculator", description=_DESCRIPTION)
