"""Specification of derive.expressions: the activation expression language (stage 0).

An activation is written as text in one real variable ``a``; parse_expression turns it into a
SymPy expression without ever evaluating the text, and refuses everything outside the language
with an ExpressionError that quotes the text and names the offending part.
"""

import builtins

import pytest
import sympy
import sympy.parsing.sympy_parser
from hypothesis import given, settings
from hypothesis import strategies as st

from derive.errors import ExpressionError
from derive.expressions import A, MAX_LENGTH, check_identifier, parse_expression


def sigmoid(x):
    return 1 / (1 + sympy.exp(-x))


def mish(x):
    return x * sympy.tanh(sympy.log(1 + sympy.exp(x)))


# ----- what the language accepts -----

GOOD = [
    ("tanh(a)", sympy.tanh(A)),
    ("a*tanh(log(1 + exp(a)))", mish(A)),
    ("Max(0, a)", sympy.Max(0, A)),
    ("Min(a, 1, 2)", sympy.Min(A, 1)),
    ("Piecewise((a, a > 0), (a/100, True))", sympy.Piecewise((A, A > 0), (A / 100, True))),
    ("0.01*a", sympy.Rational(1, 100) * A),
    ("a**2 + 3*a - 1", A**2 + 3 * A - 1),
    ("Abs(a) + sign(a)", sympy.Abs(A) + sympy.sign(A)),
    ("erf(a/sqrt(2))", sympy.erf(A / sympy.sqrt(2))),
    ("Heaviside(a)", sympy.Heaviside(A)),
    (
        "Piecewise((0, a < -1), (a, (a >= -1) & (a <= 1)), (1, True))",
        sympy.Piecewise((0, A < -1), (A, (A >= -1) & (A <= 1)), (1, True)),
    ),
    ("Piecewise((a, -1 < a < 1), (0, True))", sympy.Piecewise((A, (-1 < A) & (A < 1)), (0, True))),
    # branches that cover every a without a default: the last condition becomes the default
    ("Piecewise((a, a > 0), (2*a, a < 0), (0, a <= 0))", sympy.Piecewise((A, A > 0), (2 * A, A < 0), (0, True))),
    (
        "Piecewise((a, (a < -1) | (a > 1)), (0, True))",
        sympy.Piecewise((A, (A < -1) | (A > 1)), (0, True)),
    ),
    ("sin(a) + cos(a) + tan(a)", sympy.sin(A) + sympy.cos(A) + sympy.tan(A)),
    (
        "sinh(a) * cosh(a) - atan(a) + asinh(a)",
        sympy.sinh(A) * sympy.cosh(A) - sympy.atan(A) + sympy.asinh(A),
    ),
    ("-a + +a - -a", A),
    ("pi*a + E", sympy.pi * A + sympy.E),
    ("a / 2**3", A / 8),
    ("(a\n + 1)", A + 1),
    ("  tanh(a)  ", sympy.tanh(A)),
    ("2", sympy.Integer(2)),
    # Python's spellings of Abs, Max and Min
    ("a/(1 + abs(a))", A / (1 + sympy.Abs(A))),
    ("max(a, 0) + min(a, 0, 1)", sympy.Max(A, 0) + sympy.Min(A, 0, 1)),
]


@pytest.mark.parametrize("text, expected", GOOD)
def test_good_expressions_parse_to_the_expected_sympy_expression(text, expected):
    assert parse_expression(text) == expected


def test_the_variable_is_the_one_real_symbol_a():
    assert A == sympy.Symbol("a", real=True)
    assert parse_expression("a") is A
    assert parse_expression("a*exp(a)").free_symbols == {A}


def test_an_expression_without_a_is_a_constant():
    assert parse_expression("pi/4 + 1") == sympy.pi / 4 + 1


def test_short_decimal_literals_are_exact_rationals():
    assert parse_expression("0.1 + 0.2") == sympy.Rational(3, 10)
    assert parse_expression("1.5") == sympy.Rational(3, 2)
    assert parse_expression("1_000.5") == sympy.Rational(2001, 2)


def test_long_or_exponent_float_literals_are_floats():
    assert parse_expression("1e-3*a") == sympy.Float(1e-3) * A
    long_pi = parse_expression("3.14159265358979323846")
    assert isinstance(long_pi, sympy.Float)
    assert long_pi == sympy.Float(3.14159265358979323846)


def test_extra_functions_take_one_argument_each():
    functions = {"sigmoid": sigmoid, "softplus": lambda x: sympy.log(1 + sympy.exp(x))}
    assert parse_expression("a*sigmoid(a)", functions=functions) == A * sigmoid(A)
    assert parse_expression("softplus(2*a)", functions) == sympy.log(1 + sympy.exp(2 * A))
    with pytest.raises(ExpressionError, match="'sigmoid' takes 1 argument, got 2"):
        parse_expression("sigmoid(a, a)", functions=functions)


def test_extra_functions_are_only_known_when_passed():
    with pytest.raises(ExpressionError, match="unknown function 'sigmoid'"):
        parse_expression("sigmoid(a)")


@pytest.mark.parametrize("name", ["a", "pi", "E", "Piecewise", "_hidden", "not valid"])
def test_extra_function_names_must_be_identifiers_the_language_does_not_use(name):
    with pytest.raises(ExpressionError):
        parse_expression("a", functions={name: sigmoid})


def test_built_in_functions_keep_their_meaning():
    assert parse_expression("tanh(a)", functions={"tanh": sigmoid}) == sympy.tanh(A)


def test_extra_functions_must_be_callable():
    with pytest.raises(TypeError, match="must be callable"):
        parse_expression("a", functions={"sigmoid": 3})


# ----- what the language refuses -----

HOSTILE = [
    ("__import__('os').system('x')", "attribute access '.system'"),
    ("__import__('os')", "unknown function '__import__'"),
    ("a.__class__", "attribute access '.__class__'"),
    ("lambda: 1", "lambda"),
    ("open('f')", "unknown function 'open'"),
    ("exec('1')", "unknown function 'exec'"),
    ("eval('a')", "unknown function 'eval'"),
    ("[a for a in ()]", "list comprehension '[a for a in ()]'"),
    ("a[0]", "subscript 'a[0]'"),
    ("b + a", "unknown name 'b'"),
    ("os", "unknown name 'os'"),
    ("__builtins__", "unknown name '__builtins__'"),
    ("'abc'", "string"),
    ("b'abc'", "bytes"),
    ("1j*a", "complex number '1j'"),
    ("None", "'None'"),
    ("True", "'True' is only allowed as a Piecewise condition"),
    ("a if a else 1", "conditional expression"),
    ("f'{a}'", "f-string"),
    ("(x := 1)", "x := 1"),
    ("a and a", "'and'"),
    ("not a", "'not'"),
    ("a % 2", "'%'"),
    ("a ^ 2", "use '**'"),
    ("(a > 0) & (a < 1)", "'&'"),
    ("(a, a)", "tuple"),
    ("{a}", "set"),
    ("9**9**9**9", "exponent too large"),
    ("a**(10**10**10)", "exponent too large"),
    ("a**1000", "exponent too large"),
    ("1" * 31, "more than 30 digits"),
    ("(" * 1000 + "a" + ")" * 1000, "syntax error"),
    ("a" * (MAX_LENGTH + 1), f"the limit is {MAX_LENGTH}"),
    ("", "empty"),
    (" \n\t", "empty"),
    ("a\x00", "NUL"),
    ("a +* 1", "syntax error at column 4"),
    ("tanh(a, a)", "'tanh' takes 1 argument, got 2"),
    ("tanh()", "'tanh' takes 1 argument, got 0"),
    ("Max(a)", "'Max' takes at least 2 arguments, got 1"),
    ("tanh(x=a)", "keyword argument 'x=a'"),
    ("tanh(*a)", "'*' unpacking"),
    ("tanh", "function 'tanh' must be called"),
    ("(a + 1)(a)", "calling 'a + 1' is not allowed"),
    ("Piecewise(a)", "(expression, condition) pairs, not 'a'"),
    ("Piecewise()", "at least one (expression, condition) pair"),
    ("Piecewise((a, a > 0))", "no branch holds for a in Interval(-oo, 0)"),
    ("Piecewise((a, a > 0), (0, a < 0))", "no branch holds for a in {0}"),
    ("Piecewise((a, a))", "'a' is not a condition"),
    ("Piecewise((a, a > 0 and a < 1))", "combine Piecewise conditions with '&' and '|'"),
    ("Piecewise((a, a == 0))", "'=='"),
    ("a < 1", "comparison 'a < 1' is only allowed as a Piecewise condition"),
    ("sympify('a')", "unknown function 'sympify'"),
    ("Symbol('x')", "unknown function 'Symbol'"),
]


@pytest.mark.parametrize("text, named_part", HOSTILE)
def test_text_outside_the_language_is_refused_and_the_offending_part_named(text, named_part):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    message = str(caught.value)
    assert named_part in message
    if len(text) < 60:
        assert repr(text) in message, "the message quotes the text"


NOT_A_FINITE_REAL_NUMBER = [
    ("1/0", "does not evaluate to a finite real number"),
    ("a/0", "not finite"),
    ("log(0)", "does not evaluate to a finite real number"),
    ("sqrt(-1)", "does not evaluate to a finite real number"),
    ("1e400", "does not evaluate to a finite real number"),
    ("1e-400*a", "below the smallest double"),
    ("exp(1000)", "too large for a double"),
]


@pytest.mark.parametrize("text, problem", NOT_A_FINITE_REAL_NUMBER)
def test_constants_must_be_finite_real_doubles(text, problem):
    with pytest.raises(ExpressionError, match=problem):
        parse_expression(text)


# Each of these makes SymPy compute for hours, or run out of memory, unless refused beforehand.
HANGS = [
    "9**9**9**9",
    "a**(10**10**10)",
    "(2*a)**(10**29)",
    "((2*a)**100)**100",
    "exp(10**29*log(2))",
    "exp(log(2)*(10**29 + 1/2))",
    "exp(10**29*log(2*a))",
    "E**(10**29*log(2*a))",
    "exp(2)**(10**29*log(2*a))",
    "sigmoid(-10**29*log(2*a))",
    "sign(sin(exp(10**29)))",
    "Max(exp(exp(10**29)), 1)",
    "sin(2.0**1e20)",
]


@pytest.mark.parametrize("text", HANGS)
def test_expressions_that_would_hang_sympy_are_refused(text):
    with pytest.raises(ExpressionError):
        parse_expression(text, functions={"sigmoid": sigmoid})


DEEP = [
    "a+" * 4999 + "a",
    "-" * 9999 + "a",
    "exp(" * 300 + "a" + ")" * 300,
    "sin(" * 199 + "a" + ")" * 199,
    "(a+(" * 99 + "a" + "))" * 99,
]


@pytest.mark.parametrize("text", DEEP)
def test_very_deep_expressions_parse_or_are_refused_cleanly(text):
    try:
        result = parse_expression(text)
    except ExpressionError:
        return
    assert result.free_symbols <= {A}


@pytest.mark.parametrize("text", [None, 3, b"a", ["a"]])
def test_text_that_is_not_a_str_is_a_type_error(text):
    with pytest.raises(TypeError, match=type(text).__name__):
        parse_expression(text)


def test_nothing_is_ever_evaluated(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("parse_expression must not evaluate text")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(sympy, "sympify", forbidden)
    monkeypatch.setattr(sympy.parsing.sympy_parser, "parse_expr", forbidden)

    assert parse_expression("a*tanh(log(1 + exp(a)))") == mish(A)
    with pytest.raises(ExpressionError):
        parse_expression("__import__('os').system('x')")


# ----- any text at all: an expression in a, or an ExpressionError -----

TOKENS = [
    "a", "a", "(", ")", "+", "-", "*", "/", "**", ",", ".", "__", "_", " ", "0", "1", "2", "9",
    "0.5", "1e308", "10**", "exp(", "log(", "sqrt(", "tanh(", "Max(", "Piecewise((", "True",
    "<", "<=", ">", "&", "|", "pi", "E", "'", "[", "]", ":", "lambda", "import", "os", "class",
    "j", "=", ":=", "and", "if", "else",
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


def assert_expression_in_a_or_expression_error(text):
    try:
        result = parse_expression(text)
    except ExpressionError:
        return
    assert isinstance(result, sympy.Expr)
    assert result.free_symbols <= {A}


@settings(max_examples=1500, deadline=2000, database=None)
@given(st.text(max_size=80))
def test_any_text_gives_an_expression_in_a_or_an_expression_error(text):
    assert_expression_in_a_or_expression_error(text)


@settings(max_examples=1500, deadline=2000, database=None)
@given(token_soup)
def test_any_token_soup_gives_an_expression_in_a_or_an_expression_error(text):
    assert_expression_in_a_or_expression_error(text)


# ----- names of activations -----

def test_a_python_identifier_is_a_valid_name():
    assert check_identifier("tanh2") == "tanh2"
    assert check_identifier("my_act", what="kernel name") == "my_act"


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../x", "must be a Python identifier"),
        ("/abs", "must be a Python identifier"),
        ("a b", "must be a Python identifier"),
        ("2a", "must be a Python identifier"),
        ("class", "keyword"),
        ("_x", "reserved"),
        ("", "empty"),
        ("é", "ASCII"),
        ("x" * 65, "longer than 64"),
    ],
)
def test_other_names_are_refused_with_the_problem_named(name, problem):
    with pytest.raises(ExpressionError, match=problem) as caught:
        check_identifier(name)
    assert "activation name" in str(caught.value)


def test_a_name_that_is_not_a_str_is_a_type_error():
    with pytest.raises(TypeError, match="int"):
        check_identifier(3)
