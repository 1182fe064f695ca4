"""Stage 2a — scalar derivatives of an activation, rewritten for numerical safety.

In:  an :class:`~derive.specification.Activation` (h as a SymPy expression in ``a``).
Out: a :class:`ScalarDerivatives`: h, h', h'' in ``a``; and h', h'' as polynomials in the unit's output
     z = h(a) where such a form exists (tanh: 1 − z², logistic: z(1 − z)). Kernels use the z-forms.

Conventions for activations that are not smooth everywhere (relu, leaky_relu, Abs, sign, Max, Min,
Heaviside, Piecewise):

* Dirac-delta terms are dropped: they vanish almost everywhere, and a kernel evaluates pointwise.
* At a kink, the derivative is what SymPy's rules give with **Heaviside(0) = 0** and sign(0) = 0. For
  ``relu`` and ``leaky_relu`` this is the left derivative (h'(0) = 0 and 0.01 respectively, as PyTorch).

Numerical safety: ``log(1 + exp(x))`` becomes ``softplus(x)``, ``1/(1 + exp(-x))`` and
``exp(x)/(1 + exp(x))`` become ``sigmoid(x)``, and ``log(sigmoid(x))`` becomes ``-softplus(-x)``; both
functions are printed in overflow-free forms, and their derivatives stay in terms of σ, so h, h' and h''
of softplus, silu or a*tanh(softplus(a)) are finite for |a| up to 1e3 and beyond.
"""
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Optional

import mpmath
import sympy as sp

from .errors import DerivationError, ExpressionError
from .expressions import A, NON_FINITE
from .functions import sigmoid, softplus
from .limits import time_limit
from .specification import Activation

#: The unit's output z = h(a), the variable of the z-forms.
Z = sp.Symbol("z", real=True)

_NONSMOOTH = (sp.Piecewise, sp.Max, sp.Min, sp.Heaviside, sp.Abs, sp.sign, sp.DiracDelta)
_MAX_Z_DEGREE = 3


@dataclass(frozen=True)
class ScalarDerivatives:
    """h, h', h'' of one activation; ``d1_z``/``d2_z`` are h', h'' in :data:`Z`, or None."""

    activation: Activation
    h: sp.Expr
    d1: sp.Expr
    d2: sp.Expr
    d1_z: Optional[sp.Expr]
    d2_z: Optional[sp.Expr]

    @property
    def kernel_d1(self):
        """h' as the kernels evaluate it: in z where a z-form exists, else in a."""
        return self.d1 if self.d1_z is None else self.d1_z

    @property
    def kernel_d2(self):
        """h'' as the kernels evaluate it: in z where a z-form exists, else in a."""
        return self.d2 if self.d2_z is None else self.d2_z


@lru_cache(maxsize=256)
def derive_scalar(activation):
    """Derive h', h'' of ``activation`` and their z-forms; see the module docstring for conventions.

    Runs under :func:`derive.limits.time_limit`: an expression whose derivation would take too long
    raises DerivationError instead of hanging.
    """
    with time_limit("deriving h' and h'' of activation %r" % activation.name):
        h = make_safe(activation.expr)
        d1 = differentiate(h)
        d2 = differentiate(d1)
        derivatives = ScalarDerivatives(activation=activation, h=h, d1=d1, d2=d2,
                                        d1_z=find_z_form(d1, h), d2_z=find_z_form(d2, h))
    check_finite(derivatives)
    return derivatives


def differentiate(expr):
    """d expr / da with the kink conventions applied, simplified and made numerically safe."""
    derivative = sp.diff(expr, A)
    derivative = derivative.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    derivative = derivative.replace(lambda e: isinstance(e, sp.Heaviside), lambda e: sp.Heaviside(e.args[0], 0))
    return make_safe(_simplify(derivative))


def _simplify(expr):
    """SymPy's simplification, kept only if it is shorter and brings in no new function.

    A new function is where simplification hurts numerically: 1 - tanh(a)**2 becomes cosh(a)**-2 and
    -2 sinh(a)/cosh(a)**3 overflows to inf/inf for large |a|, where the tanh form is exact. Where SymPy's
    simplification itself fails (it raised "The argument 'nan' is not comparable" on a Max of a sign),
    the unsimplified form, which is exact, is kept.
    """
    try:
        simplified = sp.simplify(expr)
    except DerivationError:      # the time limit (derive.limits)
        raise
    except Exception:
        return expr
    new_functions = _function_types(simplified) - _function_types(expr)
    if new_functions or sp.count_ops(simplified) > sp.count_ops(expr):
        return expr
    return simplified


def _function_types(expr):
    return {type(f) for f in expr.atoms(sp.Function)} | ({sp.exp} if expr.has(sp.exp) else set())


def make_safe(expr):
    """Rewrite ``expr`` so that evaluating it cannot overflow where its value is finite.

    log(1 + exp(x)) → softplus(x); 1/(1 + exp(-x)), exp(x)/(1 + exp(x)) → sigmoid(x);
    log(sigmoid(x)) → -softplus(-x); log(1 - sigmoid(x)) → -softplus(x); and, against cancellation
    in the tails, 1 - sigmoid(x) → sigmoid(-x).
    """
    w = sp.Wild("w")
    rules = [
        (sp.log(1 + sp.exp(w)), softplus(w)),
        (1 / (1 + sp.exp(-w)), sigmoid(w)),
        (1 / (1 + sp.exp(w)), sigmoid(-w)),
        (sp.exp(w) / (1 + sp.exp(w)), sigmoid(w)),
        (sp.log(sigmoid(w)), -softplus(-w)),
        (sp.log(1 - sigmoid(w)), -softplus(w)),
        (1 - sigmoid(w), sigmoid(-w)),
        (sigmoid(w) - 1, -sigmoid(-w)),
    ]
    previous = None
    while previous != expr:
        previous = expr
        for pattern, replacement in rules:
            expr = expr.replace(pattern, replacement)
    return expr


def is_smooth(expr):
    """True when ``expr`` contains none of the functions with kinks or jumps."""
    return not expr.has(*_NONSMOOTH)


# --- z-forms ---------------------------------------------------------------------------------------

_FIT_POINTS = [mpmath.mpf(p) / 10 for p in (-23, -13, -4, 3, 9, 17, 26)]
_CHECK_POINTS = [mpmath.mpf(p) / 7 for p in range(-40, 41, 3)] + [mpmath.mpf(p) for p in (-30, -12, 12, 30)]


def find_z_form(derivative, h):
    """``derivative`` as a polynomial of degree ≤ 3 in z = h(a), or None when there is none.

    The coefficients are fitted in 50-digit arithmetic, made exact rationals, and the identity
    derivative(a) = g(h(a)) is then checked symbolically, or else at 34 points to 40 digits.
    """
    if not (is_smooth(h) and is_smooth(derivative)) or derivative.is_constant():
        return None
    try:
        with mpmath.workdps(50):
            f_h = _mp_function(h)
            f_d = _mp_function(derivative)
            for degree in range(1, _MAX_Z_DEGREE + 1):
                g = _fit_polynomial(f_h, f_d, degree)
                if g is not None and _identity_holds(derivative, h, g, f_h, f_d):
                    return g
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, ArithmeticError):
        return None
    return None


def _mp_function(expr):
    modules = [{"sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
                "softplus": lambda x: mpmath.log1p(mpmath.exp(x))}, "mpmath"]
    return sp.lambdify(A, expr, modules=modules)


def _fit_polynomial(f_h, f_d, degree):
    rows = [[f_h(p) ** k for k in range(degree + 1)] for p in _FIT_POINTS]
    values = [f_d(p) for p in _FIT_POINTS]
    coefficients = mpmath.lu_solve(mpmath.matrix(rows[:degree + 1]), mpmath.matrix(values[:degree + 1]))
    exact = []
    for c in coefficients:
        fraction = Fraction(str(mpmath.nstr(c, 40))).limit_denominator(10**6)
        if abs(mpmath.mpf(fraction.numerator) / fraction.denominator - c) > mpmath.mpf(10) ** -30:
            return None
        exact.append(sp.Rational(fraction.numerator, fraction.denominator))
    return sp.expand(sum(c * Z**k for k, c in enumerate(exact)))


def _identity_holds(derivative, h, g, f_h, f_d):
    f_g = sp.lambdify(Z, g, modules="mpmath")
    for p in _CHECK_POINTS:
        expected = f_d(p)
        if abs(f_g(f_h(p)) - expected) > mpmath.mpf(10) ** -40 * (1 + abs(expected)):
            return False
    return True


def check_finite(derivatives):
    """Raise DerivationError if h, h' or h'' still contains an unevaluated derivative or integral, and
    ExpressionError if one is complex-valued for real a (it contains the imaginary unit: h'(a) of
    (-1)**a is I pi (-1)**a) or not finite (h'(a) of 0**a is nan), which no float64 kernel can compute."""
    for name, expr in (("h", derivatives.h), ("h'", derivatives.d1), ("h''", derivatives.d2)):
        if expr.has(sp.Derivative, sp.Integral, sp.Subs):
            raise DerivationError("%s of activation %r could not be derived in closed form: %s"
                                  % (name, derivatives.activation.name, expr))
        if expr.has(sp.I):
            raise ExpressionError("%s of activation %r is complex-valued for real a (%s = %s); derive "
                                  "computes with real numbers only"
                                  % (name, derivatives.activation.name, name, expr))
        if expr.has(*NON_FINITE):
            raise ExpressionError("%s of activation %r is not finite (%s = %s)"
                                  % (name, derivatives.activation.name, name, expr))
