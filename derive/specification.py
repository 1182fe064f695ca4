"""Stage 0 — specifications: what the user asks for, before anything is derived.

In:  an activation (a built-in name, an expression string in ``a``, or an :class:`Activation`) and a loss
     name (``"sse"``, ``"bce"``, ``"ce"``).
Out: immutable :class:`Activation` and :class:`Loss` objects. The activation carries a SymPy expression
     in the real symbol ``a`` (:data:`derive.expressions.A`); the loss names its canonical output function.

Every built-in activation and loss is registered here, in one place (:data:`ACTIVATIONS`,
:data:`LOSSES`). Adding a built-in activation takes one line: a name and an expression in ``a``;
everything else (h', h'', their forms in z, the kernels and the documents) is derived from it.
"""
import hashlib
from dataclasses import dataclass

import sympy as sp

from .errors import ExpressionError, SpecificationError
from .expressions import A, check_identifier, parse_expression
from .functions import sigmoid, softplus


#: The prefix of the name an expression gets where none is given (``expr_<hash>``, see
#: :meth:`Activation.from_expression`).
UNNAMED_PREFIX = "expr_"


@dataclass(frozen=True)
class Activation:
    """An activation function h: a name and a SymPy expression in the single variable ``a``.

    ``expression`` is the text the user gave (or the canonical text of a built-in), kept so that a
    derivation document can show it; ``builtin`` tells whether the kernel ships compiled with derive.
    """

    name: str
    expr: sp.Expr
    expression: str = ""
    builtin: bool = False

    def __post_init__(self):
        check_identifier(self.name, "activation name")
        if not isinstance(self.expr, sp.Expr):
            raise TypeError("Activation.expr must be a SymPy expression, got %s" % type(self.expr).__name__)
        extra = self.expr.free_symbols - {A}
        if extra:
            raise ExpressionError("activation %r depends on %s; only the variable 'a' is allowed"
                                  % (self.name, ", ".join(sorted(map(str, extra)))))

    def __call__(self, x):
        """h(x): the expression with ``a`` replaced by ``x`` (lets a user write ``silu(a)`` in strings)."""
        return self.expr.subs(A, x)

    @property
    def key(self):
        """A short stable hash of the expression (srepr), used to name user activations and caches."""
        return hashlib.sha256(sp.srepr(self.expr).encode()).hexdigest()[:12]

    @classmethod
    def from_expression(cls, text, name=None):
        """Parse ``text`` (see :mod:`derive.expressions`) into an activation.

        Without a ``name``, the activation is called ``expr_<hash>`` after its parsed expression.
        Built-in activation names may be used as functions inside ``text`` (``"a*sigmoid(a)"``).
        """
        expr = parse_expression(text, functions=_builtin_functions())
        if name is None:
            name = UNNAMED_PREFIX + hashlib.sha256(sp.srepr(expr).encode()).hexdigest()[:12]
        elif name in ACTIVATIONS:
            raise ExpressionError("%r is the name of a built-in activation; choose another name" % name)
        return cls(name=name, expr=expr, expression=text)


def _builtin(name, expr, text):
    return Activation(name=name, expr=expr, expression=text, builtin=True)


#: The built-in activations, by name. Kinks (relu, leaky_relu) follow the convention documented in
#: :mod:`derive.scalar`: the derivative at the kink is the left derivative.
ACTIVATIONS = {
    a.name: a
    for a in [
        _builtin("tanh", sp.tanh(A), "tanh(a)"),
        _builtin("sigmoid", sigmoid(A), "1/(1 + exp(-a))"),
        _builtin("softplus", softplus(A), "log(1 + exp(a))"),
        _builtin("silu", A * sigmoid(A), "a*sigmoid(a)"),
        _builtin("gelu", A / 2 * (1 + sp.erf(A / sp.sqrt(2))), "a/2*(1 + erf(a/sqrt(2)))"),
        _builtin("sin", sp.sin(A), "sin(a)"),
        _builtin("relu", sp.Max(0, A), "Max(0, a)"),
        _builtin("leaky_relu", sp.Piecewise((A, A > 0), (A / 100, True)), "Piecewise((a, a > 0), (a/100, True))"),
    ]
}


def _builtin_functions():
    """The built-in activations as one-argument functions for the expression parser."""
    return dict(ACTIVATIONS)


def resolve_activation(spec):
    """An :class:`Activation` from a built-in name, an expression string, or an Activation.

    A string that is the name of a built-in gives that built-in, a name that ``derive generate``
    registered (:mod:`derive.names`) the expression it stands for, under that name; any other string is
    parsed as an expression in ``a``.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        if spec in ACTIVATIONS:
            return ACTIVATIONS[spec]
        if spec.strip().isidentifier():
            return _named_activation(spec.strip())
        return Activation.from_expression(spec)
    raise TypeError("activation must be a built-in name, an expression string in 'a' or an Activation, "
                    "got %s" % type(spec).__name__)


def _named_activation(name):
    """The activation a registered ``name`` stands for; else ``name`` parsed as an expression (``a``,
    ``pi`` and ``E`` are the only identifiers that are one), with an error that says where names come
    from where ``name`` could have been registered."""
    from . import names
    registrable = names.problem(name) is None
    if registrable:
        expression = names.lookup(name)
        if expression is not None:
            return Activation.from_expression(expression, name=name)
    try:
        return Activation.from_expression(name)
    except ExpressionError as error:
        if not registrable:
            raise
        raise ExpressionError("%s; %r is neither a built-in activation (%s) nor a name that `derive generate` "
                              "registered" % (error, name, ", ".join(ACTIVATIONS))) from None


@dataclass(frozen=True)
class Loss:
    """An error function E_n with its canonical output function y = f(a⁽ᴸ⁾) (PRML §5.2).

    ``output`` is ``"identity"``, ``"logistic"`` (σ per output) or ``"softmax"``; ``label`` is the PRML
    equation number of E_n. The quantities δ⁽ᴸ⁾ and Λ are derived in :mod:`derive.loss`.
    """

    name: str
    output: str
    label: str
    description: str


LOSSES = {
    l.name: l
    for l in [
        Loss("sse", "identity", "5.11", "sum-of-squares error with linear outputs"),
        Loss("bce", "logistic", "5.21", "binary cross-entropy with logistic-sigmoid outputs"),
        Loss("ce", "softmax", "5.24", "multiclass cross-entropy with softmax outputs"),
    ]
}


def resolve_loss(spec):
    """A :class:`Loss` from its name or itself."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str):
        try:
            return LOSSES[spec]
        except KeyError:
            raise SpecificationError("unknown loss %r; choose one of %s" % (spec, ", ".join(LOSSES))) from None
    raise TypeError("loss must be one of %s, got %s" % (", ".join(map(repr, LOSSES)), type(spec).__name__))
