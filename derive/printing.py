"""Code printing: SymPy expressions to C, thin and strict.

In:  SymPy expressions whose symbols are kernel variables (``a``, ``z``, ``d1[j]``, ``y[kp]``, ...).
Out: C99 expression text for the verbatim C blocks of the generated Cython modules.

The printer refuses what it cannot print faithfully (sums, Dirac deltas, unevaluated derivatives,
undefined functions) with a :class:`~derive.errors.DerivationError`, instead of emitting wrong code.
``sigmoid`` and ``softplus`` print as calls to the overflow-free helpers in :data:`C_HELPERS`,
``softmax_complement`` as −expm1 of its arguments' difference, and
``tanh`` as a call to one with expm1 inlined (it vectorises without calls into libm; within 2 ulp).
"""
import sympy as sp
from sympy.printing.c import C99CodePrinter

from .errors import DerivationError

#: C definitions of the helper functions the printed code may call; emitted once per module.
C_HELPERS = r"""
#include <stdint.h>
#include <string.h>
static inline double derive_sigmoid(double x) {
    /* 1/(1+exp(-x)) without overflow: exp is only taken of a non-positive number */
    if (x >= 0) { return 1.0 / (1.0 + exp(-x)); }
    const double e = exp(x);
    return e / (1.0 + e);
}
static inline double derive_tanh(double x) {
    /* sign(x) e / (e + 2) with e = expm1(2|x|), |x| capped at 20, beyond which tanh is 1 in double
       precision (NaN passes through). expm1 is inlined so that the loops that call this vectorise without
       a call into libm: 2|x| = k ln2 + r (Cody-Waite: ln2 in two parts; k = round(2|x| / ln2) by adding
       1.5 * 2^52), |r| <= ln2 / 2, expm1(r) by its Taylor polynomial to r^13 in Estrin's scheme (the
       remainder is below 1e-17 of it), e = 2^k expm1(r) + (2^k - 1) with 2^k from the exponent bits.
       Within 2.5 ulp of tanh (libm's: about 1); with FMA (the x86-64-v3 and v4 clones) about a quarter
       faster than a vector call of expm1. */
    const double ax = fabs(x) > 20.0 ? 20.0 : fabs(x);
    const double y = 2.0 * ax;
    const double shift = 6755399441055744.0;
    const double t = y * 1.4426950408889634 + shift;
    const double kd = t - shift;
    const double r = (y - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double q01 = 1.0 / 2 + r * (1.0 / 6), q23 = 1.0 / 24 + r * (1.0 / 120);
    const double q45 = 1.0 / 720 + r * (1.0 / 5040), q67 = 1.0 / 40320 + r * (1.0 / 362880);
    const double q89 = 1.0 / 3628800 + r * (1.0 / 39916800), q1011 = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
    const double q = (q01 + r2 * q23) + r4 * (q45 + r2 * q67) + r8 * (q89 + r2 * q1011);
    const double p = r + r2 * q;                          /* expm1(r) */
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);                       /* the low bits of t hold k */
    bits = (bits + 1023) << 52;
    double s;
    memcpy(&s, &bits, sizeof s);                          /* 2^k, 0 <= k <= 58 */
    const double e = s * p + (s - 1.0);
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
