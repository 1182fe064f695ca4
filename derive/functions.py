"""SymPy functions that derive adds to SymPy's own.

* ``sigmoid`` and ``softplus``: the logistic function σ(x) = 1/(1 + e^{-x}) and softplus log(1 + e^x)
  as functions of their own, with their derivatives (``fdiff``), so that derivatives stay in a form
  that is finite for every x (σ' = σ(1 − σ) never forms e^{1000}/e^{1000}). The code printer emits
  overflow-free implementations of both (see :mod:`derive.printing`).
* ``softmax_complement``: 1 − exp(d − s) for the output layer's 1 − y_k = 1 − exp(a_k − lse), with
  d = a_k − max_m a_m and s = log Σ_m exp(a_m − max_m a_m) kept apart, so that the printed code
  evaluates −expm1(d − s) in that order and keeps every digit where y_k rounds to 1.
* ``h``, ``h1``, ``h2``, ``h3``: a *generic* activation h and its derivatives h', h'', h''', used while the
  layer equations are derived with the activation left undefined. ``diff(h(x), x)`` is ``h1(x)``, so
  the chain rule produces h'(a_j) rather than SymPy's ``Subs``/``Derivative`` objects.
"""
import sympy as sp


class sigmoid(sp.Function):
    """The logistic sigmoid σ(x) = 1 / (1 + exp(-x)); σ'(x) = σ(x)(1 − σ(x))."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Half
        if x is sp.S.Infinity:
            return sp.S.One
        if x is sp.S.NegativeInfinity:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _latex(self, printer, exp=None):
        text = r"\sigma\left(%s\right)" % printer._print(self.args[0])
        return text if exp is None else r"\sigma^{%s}\left(%s\right)" % (exp, printer._print(self.args[0]))


class softplus(sp.Function):
    """softplus(x) = log(1 + exp(x)); softplus'(x) = σ(x)."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.log(2)
        return None

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_evalf(self, prec):
        if self.args[0].is_number:
            return self.rewrite(sp.exp)._eval_evalf(prec)
        return None

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _latex(self, printer, exp=None):
        base = r"\operatorname{softplus}"
        if exp is not None:
            base += "^{%s}" % exp
        return r"%s\left(%s\right)" % (base, printer._print(self.args[0]))


class softmax_complement(sp.Function):
    """1 − exp(d − s) (see the module docstring), evaluated as −expm1(d − s)."""

    nargs = 2

    def _eval_rewrite_as_exp(self, d, s, **kwargs):
        return 1 - sp.exp(d - s)

    def _eval_is_real(self):
        return self.args[0].is_real and self.args[1].is_real

    def _latex(self, printer, exp=None):
        text = r"\left(1 - e^{%s - %s}\right)" % (printer._print(self.args[0]), printer._print(self.args[1]))
        return text if exp is None else r"%s^{%s}" % (text, exp)


def _generic(order):
    """The class of the order-th derivative of the generic activation h."""
    primes = "'" * order
    latex_name = "h" + ("^{(%d)}" % order if order > 3 else primes)

    def fdiff(self, argindex=1):
        return _generic(order + 1)(self.args[0])

    def _latex(self, printer, exp=None):
        text = r"%s\left(%s\right)" % (latex_name, printer._print(self.args[0]))
        return text if exp is None else r"\left(%s\right)^{%s}" % (text, exp)

    if order not in _GENERIC:
        name = "h" if order == 0 else "h%d" % order
        _GENERIC[order] = type(name, (sp.Function,), {"nargs": 1, "fdiff": fdiff, "_latex": _latex,
                                                      "__doc__": "Generic activation, derivative %d." % order})
    return _GENERIC[order]


_GENERIC = {}
h = _generic(0)
h1 = _generic(1)
h2 = _generic(2)
h3 = _generic(3)
