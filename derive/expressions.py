"""Stage 0: turn the text of an activation function into a SymPy expression.

In: a ``str`` written by a user, such as ``"a*tanh(log(1 + exp(a)))"``.
Out: a SymPy expression in the one real variable :data:`A` (printed ``a``); an expression
without ``a`` (a constant) is allowed.

The language is a small part of Python expression syntax:

* int and float literals (no complex, bool, string or bytes literals);
* ``+ - * / **``, unary ``-`` and ``+``, parentheses;
* the variable ``a`` and the constants ``pi`` and ``E``;
* the functions ``exp log sqrt sin cos tan tanh sinh cosh atan asinh erf Abs sign Heaviside``
  (one argument each), ``Max`` and ``Min`` (two or more arguments), which are SymPy's
  functions of the same names (Python's spellings ``abs``, ``max`` and ``min`` mean ``Abs``, ``Max``
  and ``Min``), and any extra one-argument functions the caller passes in;
* ``Piecewise((expression, condition), ...)``, where a condition is a comparison with
  ``< <= > >=`` (chains such as ``0 < a < 1`` mean ``(0 < a) & (a < 1)``), conditions
  combined with ``&`` and ``|``, or ``True``. Comparisons and ``True`` appear nowhere else.

The text is never evaluated: :func:`ast.parse` turns it into a syntax tree and a translator
that knows an explicit whitelist of node types builds the SymPy objects itself. Anything else
is refused with an :class:`~derive.errors.ExpressionError` that quotes the text and names the
offending part. Every constant part must be a finite real number within the range of a double.
Limits on the length, the nesting, literals, exponents and the size of exact numbers keep SymPy
from spending unbounded time or memory while it builds the expression from hostile input.
"""

import ast
import keyword
import operator
import sys
import warnings
from collections.abc import Callable
from typing import NamedTuple

import sympy

from derive.errors import ExpressionError

A = sympy.Symbol("a", real=True)
"""The one variable of every activation function."""

MAX_LENGTH = 10_000
"""The longest expression text accepted, in characters."""

MAX_DEPTH = 200
"""The deepest nesting of the syntax tree accepted."""

MAX_LITERAL_DIGITS = 30
"""The most digits an integer literal may have."""

MAX_EXPONENT = 100
"""The largest absolute value of a constant exponent."""

MAX_NUMBER_BITS = 10_000
"""The most bits of an exact number (numerator or denominator) that SymPy may be asked to build."""

MAX_IDENTIFIER_LENGTH = 64
"""The longest name :func:`check_identifier` accepts."""

_DOUBLE_MAX = sys.float_info.max
_EVALF_DIGITS = 15
_MAX_EXACT_DECIMAL_DIGITS = 15  # a float literal with at most this many digits becomes a Rational
_QUOTE_LIMIT = 80
_PART_QUOTE_LIMIT = 40

_CONSTANTS = {"a": A, "pi": sympy.pi, "E": sympy.E}
NON_FINITE = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)
"""The SymPy values that are not finite real numbers; an activation or its derivatives must contain none."""


class _Function(NamedTuple):
    """A function of the language: how to build it and how many arguments it takes."""

    build: Callable
    min_arguments: int
    max_arguments: int | None  # None: no upper limit
    may_call_exp: bool = False  # it may apply exp to its argument, so exp's guard applies


_PIECEWISE = "Piecewise"  # translated on its own: its arguments are (expression, condition) pairs

_FUNCTIONS = {
    name: _Function(getattr(sympy, name), 1, 1)
    for name in (
        "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "atan", "asinh",
        "erf", "Abs", "sign", "Heaviside",
    )
}
_FUNCTIONS.update(
    exp=_Function(sympy.exp, 1, 1, may_call_exp=True),
    Max=_Function(sympy.Max, 2, None),
    Min=_Function(sympy.Min, 2, None),
)
_FUNCTIONS.update(abs=_FUNCTIONS["Abs"], max=_FUNCTIONS["Max"], min=_FUNCTIONS["Min"])   # Python's names

#: Every name the expression language gives a meaning of its own: the variable, the constants, the functions.
LANGUAGE_NAMES = frozenset(_CONSTANTS) | frozenset(_FUNCTIONS) | {_PIECEWISE}

_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARISONS = {
    ast.Lt: sympy.StrictLessThan,
    ast.LtE: sympy.LessThan,
    ast.Gt: sympy.StrictGreaterThan,
    ast.GtE: sympy.GreaterThan,
}
_CONNECTIVES = {ast.BitAnd: sympy.And, ast.BitOr: sympy.Or}

_OPERATOR_SYMBOLS = {
    ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|", ast.Not: "not", ast.Invert: "~",
    ast.And: "and", ast.Or: "or", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
    ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}
_OPERATOR_HINTS = {
    ast.BitXor: "; use '**' for powers",
    ast.BitAnd: "; '&' only combines Piecewise conditions",
    ast.BitOr: "; '|' only combines Piecewise conditions",
    ast.Not: "; write the opposite comparison instead",
    ast.And: "; combine Piecewise conditions with '&' and '|'",
    ast.Or: "; combine Piecewise conditions with '&' and '|'",
}

_LITERAL_KINDS = {
    str: "string",
    bytes: "bytes literal",
    complex: "complex number",
    type(None): "the constant",
    type(Ellipsis): "the constant",
}

_NODE_KINDS = {
    ast.Lambda: ("lambda", ""),
    ast.IfExp: ("conditional expression", "; use Piecewise((value, condition), (other, True))"),
    ast.NamedExpr: ("assignment expression", ""),
    ast.JoinedStr: ("f-string", ""),
    ast.ListComp: ("list comprehension", ""),
    ast.SetComp: ("set comprehension", ""),
    ast.DictComp: ("dict comprehension", ""),
    ast.GeneratorExp: ("generator expression", ""),
    ast.List: ("list", ""),
    ast.Set: ("set", ""),
    ast.Dict: ("dict", ""),
    ast.Tuple: ("tuple", "; only Piecewise takes (expression, condition) pairs"),
    ast.Subscript: ("subscript", ""),
    ast.Starred: ("'*' unpacking", ""),
    ast.Await: ("await", ""),
    ast.Yield: ("yield", ""),
    ast.YieldFrom: ("yield from", ""),
}


def parse_expression(text, functions=None):
    """Translate an activation function's text into a SymPy expression in :data:`A`.

    Parameters
    ----------
    text : str
        The expression, in the language described in this module's docstring.
    functions : mapping of str to callable, optional
        Extra one-argument functions, ``name -> f(sympy.Expr) -> sympy.Expr``, allowed in
        addition to the built-in ones (for example ``{"sigmoid": ...}``). A name must pass
        :func:`check_identifier` and cannot be ``a``, ``pi``, ``E`` or ``Piecewise``; a name that
        is already a function of the language (such as ``tanh``) keeps its built-in meaning.

    Returns
    -------
    sympy.Expr
        The expression; its only free symbol, if any, is :data:`A`.

    Raises
    ------
    TypeError
        If `text` is not a ``str`` or a value of `functions` is not callable.
    ExpressionError
        If `text` is outside the language or too large, or a name in `functions` is invalid.
    """
    table = _function_table(functions)
    tree = _parse(text)
    translator = _Translator(text, tree.source, table)
    try:
        expression = translator.expression(tree.body, depth=1)
        non_finite = [str(atom) for atom in NON_FINITE if expression.has(atom)]
    except (RecursionError, MemoryError) as error:
        raise _error(text, f"it is too complex to translate ({type(error).__name__})") from error
    if non_finite:
        raise _error(text, "it is not finite: SymPy's expression for it contains "
                           f"{', '.join(non_finite)}")
    return expression


def check_identifier(name, what="activation name"):
    """Return `name` if it is a safe name for an activation, a kernel or a file; raise otherwise.

    A safe name is a ``str`` of at most :data:`MAX_IDENTIFIER_LENGTH` ASCII characters that is a
    Python identifier, not a keyword, and does not start with ``_`` (reserved for derive).

    Raises
    ------
    TypeError
        If `name` is not a ``str``.
    ExpressionError
        If `name` is not safe; the message names the problem. `what` says what the name is for.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    problem = _identifier_problem(name)
    if problem:
        raise ExpressionError(f"{_quote(name, _PART_QUOTE_LIMIT)} is not a valid {what}: {problem}")
    return name


def _identifier_problem(name):
    """Say what makes the str `name` an unsafe identifier, or return None if it is safe."""
    if not name:
        return "it is empty"
    if len(name) > MAX_IDENTIFIER_LENGTH:
        return f"it is longer than {MAX_IDENTIFIER_LENGTH} characters"
    if not name.isascii():
        return "it must be ASCII"
    if not name.isidentifier():
        return "it must be a Python identifier (letters, digits and '_', not starting with a digit)"
    if keyword.iskeyword(name):
        return "it is a Python keyword"
    if name.startswith("_"):
        return "names starting with '_' are reserved"
    return None


def _function_table(functions):
    """Return the built-in functions plus the caller's extra one-argument `functions`.

    A built-in function keeps its meaning when `functions` has an entry of the same name. Nothing
    is known about what an extra function computes, so it is guarded like exp.
    """
    table = dict(_FUNCTIONS)
    for name, build in (functions or {}).items():
        check_identifier(name, "function name")
        if name in _CONSTANTS or name == _PIECEWISE:
            raise ExpressionError(f"{name!r} cannot be a function name: the expression language "
                                  "uses it")
        if not callable(build):
            raise TypeError(f"function {name!r} must be callable, not {type(build).__name__}")
        table.setdefault(name, _Function(build, 1, 1, may_call_exp=True))
    return table


class _ParsedText(NamedTuple):
    """The syntax tree of an expression and the exact source it was parsed from."""

    body: ast.expr
    source: str


def _parse(text):
    """Check `text` is a reasonable str and parse it with :func:`ast.parse` in eval mode."""
    if not isinstance(text, str):
        raise TypeError(f"an activation expression must be a str, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise _error(text, f"it is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if "\x00" in text:
        raise _error(text, "it contains a NUL character")
    source = text.strip()
    if not source:
        raise _error(text, "it is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escapes in a (rejected) string literal
            tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        raise _error(text, _describe_syntax_error(error, source)) from error
    except (RecursionError, MemoryError) as error:
        problem = f"it is nested too deeply for Python's parser ({type(error).__name__})"
        raise _error(text, problem) from error
    except (ValueError, OverflowError) as error:  # e.g. a lone surrogate character
        raise _error(text, f"Python cannot parse it: {_shorten(str(error))}") from error
    return _ParsedText(tree.body, source)


def _describe_syntax_error(error, source):
    """Say where a syntax error is, as 'syntax error at [line L, ]column C: message'."""
    where = f"column {error.offset}"
    if "\n" in source and error.lineno:
        where = f"line {error.lineno}, {where}"
    return f"syntax error at {where}: {error.msg}"


def _error(text, problem):
    """Return the ExpressionError for `problem` in the expression `text`."""
    return ExpressionError(f"invalid activation expression {_quote(text, _QUOTE_LIMIT)}: {problem}")


def _shorten(text, limit=_QUOTE_LIMIT):
    """Cut `text` to at most `limit` characters, marking a cut with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quote(text, limit):
    """Quote `text` for a message, shortened and with unprintable characters escaped."""
    return repr(_shorten(text, limit))


class _Translator:
    """Builds SymPy objects from the syntax tree of one expression, refusing unknown nodes."""

    def __init__(self, text, source, functions):
        self.text = text  # the user's text, quoted in messages
        self.source = source  # the text that was parsed; node positions refer to it
        self.functions = functions

    # ----- expressions -----

    def expression(self, node, depth):
        """Translate `node`, which is `depth` levels deep, into a SymPy expression."""
        self._check_depth(depth)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self._binary(node, depth)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise self._not_allowed(node)

    def _constant(self, node):
        """Translate an int or float literal; refuse every other literal."""
        value = node.value
        if value is True:
            raise self._fail("'True' is only allowed as a Piecewise condition")
        if value is False:
            raise self._fail("'False' is not allowed")
        if isinstance(value, int):
            if abs(value) >= 10**MAX_LITERAL_DIGITS:
                raise self._fail(f"integer literal {self._part(node)} has more than "
                                 f"{MAX_LITERAL_DIGITS} digits")
            return sympy.Integer(value)
        if isinstance(value, float):
            return self._float(node)
        kind = _LITERAL_KINDS.get(type(value), type(value).__name__)
        raise self._fail(f"{kind} {self._part(node)} is not allowed")

    def _float(self, node):
        """Translate a float literal: exactly if it is a short decimal, else as a Float."""
        literal = ast.get_source_segment(self.source, node).replace("_", "")
        if node.value == 0.0 and any(digit in "123456789" for digit in literal.lower().split("e")[0]):
            raise self._fail(f"float literal {literal} is below the smallest double and would be 0")
        significant_digits = literal.replace(".", "").lstrip("0")
        if "e" not in literal.lower() and len(significant_digits) <= _MAX_EXACT_DECIMAL_DIGITS:
            return sympy.Rational(literal)
        return self._checked(node, sympy.Float(node.value))

    def _name(self, node):
        """Translate the variable ``a`` or a constant; refuse every other name."""
        name = node.id
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name == _PIECEWISE:
            raise self._fail("Piecewise must be called, as in 'Piecewise((a, a > 0), (0, True))'")
        if name in self.functions:
            raise self._fail(f"function {name!r} must be called, as in '{name}(a)'")
        raise self._fail(f"unknown name {name!r}; the variable is 'a' and the constants are "
                         "'pi' and 'E'")

    def _unary(self, node, depth):
        """Translate unary minus and plus."""
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise self._operator_not_allowed(node.op)
        operand = self.expression(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return operand
        return self._checked(node, self._construct(node, operator.neg, operand))

    def _binary(self, node, depth):
        """Translate ``+ - * /`` and ``**``."""
        operation = type(node.op)
        if operation is not ast.Pow and operation not in _ARITHMETIC:
            raise self._operator_not_allowed(node.op)
        left = self.expression(node.left, depth + 1)
        right = self.expression(node.right, depth + 1)
        if operation is ast.Pow:
            self._check_power(node, left, right)
            build = operator.pow
        else:
            build = _ARITHMETIC[operation]
        return self._checked(node, self._construct(node, build, left, right))

    def _call(self, node, depth):
        """Translate a call of a function of the language."""
        if not isinstance(node.func, ast.Name):
            self.expression(node.func, depth + 1)  # raises the specific error for hostile syntax
            raise self._fail(f"calling {self._part(node.func)} is not allowed; only named "
                             "functions can be called")
        name = node.func.id
        if node.keywords:
            raise self._fail(f"keyword argument {self._part(node.keywords[0])} in "
                             f"{self._part(node)} is not allowed")
        if name == _PIECEWISE:
            return self._piecewise(node, depth)
        function = self.functions.get(name)
        if function is None:
            raise self._fail(f"unknown function {name!r}; the functions are "
                             f"{', '.join(sorted([*self.functions, _PIECEWISE]))}")
        self._check_arity(node, name, function)
        arguments = [self.expression(argument, depth + 1) for argument in node.args]
        if function.may_call_exp:
            self._check_exp(node, arguments[0])
        return self._checked(node, self._construct(node, function.build, *arguments))

    def _check_arity(self, node, name, function):
        """Refuse a call of `function` with the wrong number of arguments."""
        count = len(node.args)
        low, high = function.min_arguments, function.max_arguments
        if low <= count and (high is None or count <= high):
            return
        if high is None:
            expected = f"at least {low} arguments"
        else:
            expected = f"{low} argument" + ("s" if low != 1 else "")
        raise self._fail(f"{name!r} takes {expected}, got {count} in {self._part(node)}")

    def _piecewise(self, node, depth):
        """Translate ``Piecewise((expression, condition), ...)``."""
        if not node.args:
            raise self._fail("Piecewise needs at least one (expression, condition) pair")
        pieces = []
        for argument in node.args:
            if not (isinstance(argument, ast.Tuple) and len(argument.elts) == 2):
                raise self._fail("Piecewise takes (expression, condition) pairs, not "
                                 f"{self._part(argument)}")
            value, condition = argument.elts
            pieces.append((self.expression(value, depth + 2), self.condition(condition, depth + 2)))
        built = self._construct(node, sympy.Piecewise, *pieces)
        if isinstance(built, sympy.Piecewise):
            built = self._exhaustive(node, built)
        return self._checked(node, built)

    def _exhaustive(self, node, piecewise):
        """``piecewise`` with a default branch: refused where it leaves the function undefined somewhere
        on the real line (no branch holds there: an activation needs a value at every a); where its
        branches cover every a without one, the last condition becomes True (the same function on the
        reals, and the form the code printer needs)."""
        conditions = [piece.cond for piece in piecewise.args]
        if sympy.true in conditions:
            return piecewise
        try:
            uncovered = sympy.S.Reals - sympy.Or(*conditions).as_set()
        except Exception:   # a condition SymPy cannot turn into a set: ask for the default branch
            uncovered = None
        if uncovered is not None and uncovered == sympy.S.EmptySet:
            *first, (last, _) = piecewise.args
            return self._construct(node, sympy.Piecewise, *first, (last, True))
        where = "" if uncovered is None else f" (no branch holds for a in {uncovered})"
        raise self._fail(f"{self._part(node)} does not define a value for every a{where}; "
                         "end it with a default branch (expression, True)")

    # ----- Piecewise conditions -----

    def condition(self, node, depth):
        """Translate a Piecewise condition: a comparison, ``&``/``|`` of conditions, or True."""
        self._check_depth(depth)
        if isinstance(node, ast.Constant) and node.value is True:
            return sympy.true
        if isinstance(node, ast.Compare):
            return self._comparison(node, depth)
        if isinstance(node, ast.BinOp) and type(node.op) in _CONNECTIVES:
            left = self.condition(node.left, depth + 1)
            right = self.condition(node.right, depth + 1)
            return self._construct(node, _CONNECTIVES[type(node.op)], left, right)
        self.expression(node, depth)  # raises the specific error for syntax outside the language
        raise self._fail(f"{self._part(node)} is not a condition; a Piecewise condition is a "
                         "comparison such as 'a < 0', comparisons combined with '&' and '|', "
                         "or True")

    def _comparison(self, node, depth):
        """Translate a comparison; a chain ``x < y < z`` means ``(x < y) & (y < z)``."""
        for operation in node.ops:
            if type(operation) not in _COMPARISONS:
                raise self._operator_not_allowed(operation)
        operands = [
            self.expression(operand, depth + 1) for operand in (node.left, *node.comparators)
        ]
        relations = [
            self._construct(node, _COMPARISONS[type(operation)], left, right)
            for operation, left, right in zip(node.ops, operands, operands[1:])
        ]
        return self._construct(node, sympy.And, *relations)

    # ----- guards -----

    def _check_depth(self, depth):
        """Refuse nesting deeper than MAX_DEPTH before recursing further."""
        if depth > MAX_DEPTH:
            raise self._fail(f"it is nested more than {MAX_DEPTH} levels deep")

    def _check_power(self, node, base, exponent):
        """Refuse ``base**exponent`` if SymPy would build a huge exact number for it.

        A constant exponent must be at most MAX_EXPONENT in absolute value, and raising the exact
        numbers in `base` to it must not give numbers of more than MAX_NUMBER_BITS bits (SymPy
        distributes a power over a product, so ``(2*a)**100`` computes ``2**100``). SymPy turns
        ``E**x`` and ``exp(y)**x`` into ``exp(y*x)``, so these are checked like exp.
        """
        root, power = base.as_base_exp()
        if root == sympy.E:
            self._check_exp(node, sympy.Mul(power, exponent, evaluate=False))
        if exponent.free_symbols:
            return
        self._check_power_size(node, base, abs(exponent.evalf(_EVALF_DIGITS)))

    def _check_exp(self, node, argument):
        """Refuse ``exp(c*log(x))`` with a large c: SymPy rewrites it as ``x**c``.

        Every exact number in `argument` is taken as a possible c, which errs on the safe side.
        """
        if not argument.has(sympy.log):
            return
        largest = max((abs(number) for number in argument.atoms(sympy.Rational)), default=0)
        self._check_power_size(node, argument, largest)

    def _check_power_size(self, node, base, exponent_size):
        """Refuse raising the exact numbers in `base` to a power of size `exponent_size`."""
        if exponent_size > MAX_EXPONENT:
            raise self._fail(f"exponent too large in {self._part(node)}: a constant exponent "
                             f"must be at most {MAX_EXPONENT} in absolute value")
        bits = max((_bits(number) for number in base.atoms(sympy.Rational)), default=0)
        if bits * exponent_size > MAX_NUMBER_BITS:
            raise self._fail(f"number too large in {self._part(node)}: its exact value would "
                             f"have more than {MAX_NUMBER_BITS} bits")

    def _checked(self, node, value):
        """Return the SymPy object `value` built for `node` if it is a safe expression.

        It must be a SymPy expression whose only free symbol is A; if it is a constant, it must be
        a finite real number within the range of a double, and if exact, of bounded size.
        """
        if not isinstance(value, sympy.Expr):
            raise self._fail(f"{self._part(node)} is not an expression (SymPy gives "
                             f"{type(value).__name__})")
        symbols = value.free_symbols
        if symbols - {A}:
            names = ", ".join(sorted(str(symbol) for symbol in symbols - {A}))
            raise self._fail(f"{self._part(node)} contains the unknown symbol(s) {names}")
        if not symbols:
            self._check_constant(node, value)
        return value

    def _check_constant(self, node, value):
        """Refuse a constant that is not a finite real number of double range and bounded size."""
        if value.is_Rational and _bits(value) > MAX_NUMBER_BITS:
            raise self._fail(f"number too large in {self._part(node)}: it has more than "
                             f"{MAX_NUMBER_BITS} bits")
        number = self._construct(node, value.evalf, _EVALF_DIGITS)
        if not (number.is_Number and number.is_finite):
            raise self._fail(f"{self._part(node)} does not evaluate to a finite real number "
                             f"(SymPy gives {_shorten(str(number))})")
        if abs(number) > _DOUBLE_MAX:
            raise self._fail(f"{self._part(node)} is too large for a double (about "
                             f"{_shorten(str(number.evalf(4)))})")

    # ----- building and errors -----

    def _construct(self, node, build, *arguments):
        """Call SymPy's `build` for `node`, turning any exception into an ExpressionError."""
        try:
            return build(*arguments)
        except Exception as error:  # SymPy reports unsuitable input through many exception types
            raise self._fail(f"SymPy cannot build {self._part(node)}: "
                             f"{type(error).__name__}: {_shorten(str(error))}") from error

    def _not_allowed(self, node):
        """Return the error for a node type outside the language."""
        if isinstance(node, ast.Attribute):
            return self._fail(f"attribute access '.{node.attr}' is not allowed")
        if isinstance(node, ast.BoolOp):
            return self._operator_not_allowed(node.op)
        if isinstance(node, ast.Compare):
            return self._fail(f"comparison {self._part(node)} is only allowed as a Piecewise "
                              "condition")
        kind, hint = _NODE_KINDS.get(type(node), (type(node).__name__, ""))
        return self._fail(f"{kind} {self._part(node)} is not allowed{hint}")

    def _operator_not_allowed(self, operation):
        """Return the error for an operator outside the language."""
        symbol = _OPERATOR_SYMBOLS.get(type(operation), type(operation).__name__)
        hint = _OPERATOR_HINTS.get(type(operation), "")
        return self._fail(f"operator {symbol!r} is not allowed{hint}")

    def _part(self, node):
        """Quote the source text of `node` for a message."""
        segment = ast.get_source_segment(self.source, node) or type(node).__name__
        return _quote(segment, _PART_QUOTE_LIMIT)

    def _fail(self, problem):
        """Return the ExpressionError for `problem` in this expression."""
        return _error(self.text, problem)


def _bits(number):
    """The number of bits of the larger of the numerator and denominator of a SymPy Rational."""
    return max(abs(number.p).bit_length(), number.q.bit_length())
