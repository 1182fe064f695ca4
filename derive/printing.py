"""Code printing: SymPy expressions to C, thin and strict.

In:  SymPy expressions whose symbols are kernel variables (``a``, ``z``, ``d1[j]``, ``y[kp]``, ...).
Out: C99 expression text for the verbatim C blocks of the generated Cython modules.

The printer refuses what it cannot print faithfully (sums, Dirac deltas, unevaluated derivatives,
undefined functions) with a :class:`~derive.errors.DerivationError`, instead of emitting wrong code.
``sigmoid`` and ``softplus`` print as calls to the overflow-free helpers in :data:`C_HELPERS`,
``softmax_complement`` as −expm1 of its arguments' difference, and
``tanh`` as a call to one through ``expm1`` (faster in vector loops, within a few ulp of libm's).
"""
import sympy as sp
from sympy.printing.c import C99CodePrinter

from .errors import DerivationError

#: C definitions of the helper functions the printed code may call; emitted once per module.
C_HELPERS = r"""
static inline double derive_sigmoid(double x) {
    /* 1/(1+exp(-x)) without overflow: exp is only taken of a non-positive number */
    if (x >= 0) { return 1.0 / (1.0 + exp(-x)); }
    const double e = exp(x);
    return e / (1.0 + e);
}
static inline double derive_tanh(double x) {
    /* sign(x) expm1(2|x|) / (expm1(2|x|) + 2): one expm1, which vectorises better than tanh in libmvec;
       |x| capped at 20, beyond which tanh is 1 in double precision (NaN passes through) */
    const double ax = fabs(x) > 20.0 ? 20.0 : fabs(x);
    const double e = expm1(2.0 * ax);
    return copysign(e / (e + 2.0), x);
}
static inline double derive_softplus(double x) {
    /* log(1+exp(x)) = max(x,0) + log1p(exp(-|x|)) */
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}
"""


class KernelPrinter(C99CodePrinter):
    """SymPy's C99 printer with derive's functions, and strict about everything else."""

    def _print_sigmoid(self, expr):
        return "derive_sigmoid(%s)" % self._print(expr.args[0])

    def _print_tanh(self, expr):
        return "derive_tanh(%s)" % self._print(expr.args[0])

    def _print_softplus(self, expr):
        return "derive_softplus(%s)" % self._print(expr.args[0])

    def _print_softmax_complement(self, expr):
        # the parentheses keep d - s from being regrouped with the terms of d
        return "(-expm1((%s) - (%s)))" % (self._print(expr.args[0]), self._print(expr.args[1]))

    def _print_Heaviside(self, expr):
        x = self._print(expr.args[0])
        at_zero = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return "((%s) > 0 ? 1.0 : ((%s) < 0 ? 0.0 : %s))" % (x, x, self._print(sp.Float(at_zero)))

    def _print_KroneckerDelta(self, expr):
        return "((%s) == (%s) ? 1.0 : 0.0)" % (self._print(expr.args[0]), self._print(expr.args[1]))

    def _print_sign(self, expr):
        x = self._print(expr.args[0])
        return "((%s) > 0 ? 1.0 : ((%s) < 0 ? -1.0 : 0.0))" % (x, x)

    def _print_Indexed(self, expr):
        # Kernel arrays are flat: a two-index quantity is given a `shape` by the lowering pass.
        base = str(expr.base.label)
        if len(expr.indices) == 1:
            return "%s[%s]" % (base, self._print(expr.indices[0]))
        if expr.base.shape is None:
            raise DerivationError("cannot print %s: two-index array without a shape" % expr)
        (row, col), (_, ncols) = expr.indices, expr.base.shape
        return "%s[(%s)*(%s) + (%s)]" % (base, self._print(row), self._print(ncols), self._print(col))

    def _refuse(self, expr):
        raise DerivationError("cannot print %s into a kernel: %s" % (type(expr).__name__, expr))

    _print_Sum = _print_DiracDelta = _print_Derivative = _print_Subs = _print_Integral = _refuse

    def _print_Function(self, expr):
        if type(expr).__name__ in self.known_functions or hasattr(self, "_print_" + type(expr).__name__):
            return super()._print_Function(expr)
        return self._refuse(expr)


_PRINTER = KernelPrinter({"strict": True})


def ccode(expr):
    """C99 text of ``expr`` (see :class:`KernelPrinter`)."""
    text = _PRINTER.doprint(sp.sympify(expr))
    if "Not supported" in text or "//" in text:
        raise DerivationError("cannot print %s into a kernel:\n%s" % (expr, text))
    return text


def c_assignments(expressions, prefix):
    """Common subexpressions of ``expressions`` shared: (list of (name, C text), list of C texts).

    Temporary names are ``<prefix>0, <prefix>1, ...``.
    """
    symbols = sp.numbered_symbols(prefix, real=True)
    temporaries, reduced = sp.cse(list(expressions), symbols=symbols, optimizations="basic")
    return [(str(name), ccode(value)) for name, value in temporaries], [ccode(e) for e in reduced]
