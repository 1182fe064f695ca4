"""Stage 1b — the output layer: δ⁽ᴸ⁾ and Λ derived from each loss by differentiating E_n(f(a)).

In:  a :class:`~derive.specification.Loss` (its E_n and canonical output function f).
Out: a :class:`LossDerivation` with labelled equations — y = f(a) (5.75–5.77 give ∂y/∂a), E_n,
     δ_k = ∂E_n/∂a_k (5.54), Λ_kk' = ∂²E_n/∂a_k∂a_k' and the R-operator's output step
     R{δ_k} = Σ_k' Λ_kk' R{a_k'} (5.106L with M⁽ᴸ⁾ = Λ) summed in closed form — and the same quantities in
     the form the kernels evaluate: per output k, in terms of y_k, t_k, the sum of the targets Σ_m t_m,
     (softmax) the log-sum-exp of a, and the per-sample sums over outputs that the closed form of
     R{δ_k} needs (Σ_m y_m R{a_m} for softmax), so that an HVP never forms the K × K matrix Λ.

E_n is written with the output function inside (y_k = exp(a_k)/Σ_m exp(a_m) for ``ce``) and
differentiated in indexed form, so the results hold for any targets (``ce`` rows need not sum to one).
The kernel forms are rewritten for numerical safety: log σ(a) = −softplus(−a), and for softmax every
exp(a_k)/Σ_m exp(a_m) becomes exp(a_k − lse) with lse = log Σ_m exp(a_m) computed with the max shifted
out, so no exp overflows.
"""
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .calculus import partial, tidy
from .equation import Equation
from .errors import DerivationError
from .functions import sigmoid, softmax_complement
from .scalar import make_safe
from .specification import resolve_loss

S_LOSS = "5.2 Network training: output units and error functions"

k, k2, m, p = sp.symbols("k k' m p", integer=True)
K = sp.Symbol("d_{L}", integer=True, positive=True)
a = sp.IndexedBase(sp.Symbol("a^{(L)}"))
y = sp.IndexedBase(sp.Symbol("y"))
t = sp.IndexedBase(sp.Symbol("t"))
Lam = sp.IndexedBase(sp.Symbol(r"\Lambda"))
delta = sp.IndexedBase(sp.Symbol(r"\delta^{(L)}"))
Ra = sp.IndexedBase(sp.Symbol(r"\mathcal{R}\{a^{(L)}\}"))
Rdelta = sp.IndexedBase(sp.Symbol(r"\mathcal{R}\{\delta^{(L)}\}"))
dy_da = sp.IndexedBase(sp.Symbol(r"\frac{\partial y}{\partial a^{(L)}}"))
E_n = sp.Symbol("E_n")

#: Names of the per-sample reductions the kernels compute before the per-output expressions.
LSE = sp.Symbol("lse", real=True)        # log Σ_m exp(a_m), with the maximum shifted out: amax + lsum
AMAX = sp.Symbol("amax", real=True)      # max_m a_m
LSUM = sp.Symbol("lsum", real=True)      # log Σ_m exp(a_m − amax), in [0, log d_L]
TSUM = sp.Symbol("tsum", real=True)      # Σ_m t_m


@dataclass(frozen=True)
class LossDerivation:
    """The output layer of one loss. ``kernel`` maps 'y', 'e', 'delta', 'lambda', 'jacobian', 'r_delta' to
    expressions in the kernel symbols a[k], y[k], y[k'], t[k], R{a}[k], ``lse``, ``tsum`` and the names of
    ``r_sums`` (see :func:`kernel_forms`); ``r_sums`` is a tuple of (name, summand in index k): the
    per-sample sums Σ_k summand that 'r_delta' uses."""

    loss: object
    equations: tuple
    kernel: dict
    r_sums: tuple = ()

    @property
    def uses(self):
        """The per-sample reductions the output layer's kernel expressions need ('lse', 'tsum')."""
        return _reductions(value for key, value in self.kernel.items() if key != "r_delta")

    @property
    def jacobian_uses(self):
        """The per-sample reductions ('lse') that the kernel form of ∂y_k/∂a_k' needs."""
        return _reductions([self.kernel["jacobian"]])

    @property
    def r_uses(self):
        """The per-sample reductions ('lse', 'tsum') that 'r_delta' and the summands of ``r_sums`` need."""
        return _reductions([self.kernel["r_delta"]] + [summand for _, summand in self.r_sums])


def _reductions(exprs):
    """'lse' (which also provides amax and lsum) and 'tsum', where the expressions use them."""
    symbols = set().union(*(e.free_symbols for e in exprs))
    return tuple(name for name, names in (("lse", {LSE, AMAX, LSUM}), ("tsum", {TSUM})) if names & symbols)


def _softmax_sum():
    return sp.Sum(sp.exp(a[p]), (p, 1, K))


def _output(loss, index):
    """y_index = f(a) for the loss's canonical output function."""
    if loss.output == "identity":
        return a[index]
    if loss.output == "logistic":
        return sigmoid(a[index])
    return sp.exp(a[index]) / _softmax_sum()


def _error(loss):
    """E_n as a function of the output pre-activations a (y = f(a) substituted), per PRML 5.11/5.21/5.24."""
    f = _output(loss, m)
    if loss.name == "sse":
        term = (f - t[m]) ** 2 / 2
    elif loss.name == "bce":
        term = -(t[m] * sp.log(f) + (1 - t[m]) * sp.log(1 - f))
    else:
        term = -t[m] * sp.log(f)
    return sp.Sum(term, (m, 1, K))


def _in_terms_of_y(expr, loss):
    """Name the outputs: f(a_q) → y_q (σ(a_q) → y_q; exp(a_q)/Σ exp → y_q)."""
    if loss.output == "logistic":
        expr = expr.replace(lambda e: isinstance(e, sigmoid) and isinstance(e.args[0], sp.Indexed),
                            lambda e: y[e.args[0].indices])
    elif loss.output == "softmax":
        S = sp.Symbol("S", positive=True)
        expr = sp.expand_power_exp(expr.subs(_softmax_sum(), S))
        expr = expr.replace(lambda e: isinstance(e, sp.exp) and isinstance(e.args[0], sp.Indexed),
                            lambda e: y[e.args[0].indices] * S)
        expr = sp.expand(sp.cancel(expr))
    elif loss.output == "identity":
        expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == a, lambda e: y[e.indices])
    return tidy(sp.factor_terms(expr))


def _output_jacobian(loss):
    """∂y_k/∂a_k' (5.75–5.77), by differentiating f."""
    return _in_terms_of_y(partial(_output(loss, k), a[k2]), loss)


@lru_cache(maxsize=None)
def derive_loss(loss):
    """δ⁽ᴸ⁾ and Λ of ``loss`` (a name or Loss), derived from E_n(f(a)); see the module docstring."""
    loss = resolve_loss(loss)
    error = _error(loss)
    d = sp.simplify(partial(error, a[k]))
    lam = sp.simplify(partial(d, a[k2]))
    delta_y, lam_y = _in_terms_of_y(d, loss), _in_terms_of_y(lam, loss)
    jac_label = {"identity": "5.75", "logistic": "5.76", "softmax": "5.77"}[loss.output]
    jacobian = _output_jacobian(loss)
    r_delta, r_sums = lambda_times(lam_y)
    shown = r_delta.xreplace({name: sp.Sum(summand.xreplace({k: p}), (p, 1, K)) for name, summand in r_sums})
    equations = (
        Equation(loss.label, "error", "the error of sample n: " + loss.description, E_n,
                 _in_terms_of_y_display(error, loss), S_LOSS, definition=True),
        Equation(jac_label, "output_jacobian", "derivative of the %s output function" % loss.output,
                 dy_da[k, k2], jacobian, S_LOSS),
        Equation("5.54", "delta_output", "output errors δ_k = ∂E_n/∂a_k", delta[k], delta_y, S_LOSS),
        Equation("5.92L", "Lambda", "Λ = M⁽ᴸ⁾ = ∂²E_n/∂a_k∂a_k'", Lam[k, k2], lam_y, S_LOSS),
        Equation("5.106L", "R_delta_loss", "R-backward at the outputs: Σ_k' Λ_kk' R{a_k'} summed for this loss",
                 Rdelta[k], shown, S_LOSS),
    )
    tsum = _tsum_names()
    kernel = kernel_forms(loss, error, delta_y, lam_y, jacobian)
    kernel["r_delta"] = r_delta.xreplace(tsum)
    return LossDerivation(loss=loss, equations=equations, kernel=kernel,
                          r_sums=tuple((name, summand.xreplace(tsum)) for name, summand in r_sums))


def lambda_times(lam):
    """Σ_k' Λ_kk' R{a}_k' in closed form, for Λ (in y, t, Σ t and I_kk') of one loss.

    Each term of the expanded Λ either holds I_kk' — it contributes the term at k' = k times R{a}_k — or
    is a product of factors in k and factors in k' — it contributes the factors in k times the per-sample
    sum Σ_k' (factors in k') R{a}_k', which gets a name (rsum0, rsum1, ...). Returns (the closed form,
    ((name, summand written in index k), ...)). A term whose factors mix k and k' is refused."""
    terms, sums = [], {}
    for term in sp.Add.make_args(sp.expand(lam)):
        factors = sp.Mul.make_args(term)
        deltas = [f for f in factors if isinstance(f, sp.KroneckerDelta) and set(f.args) == {k, k2}]
        if len(deltas) == 1:
            rest = sp.Mul(*[f for f in factors if f is not deltas[0]])
            terms.append(rest.xreplace({k2: k}) * Ra[k])
            continue
        if any(f.has(k) and f.has(k2) for f in factors):
            raise DerivationError("Λ term %s does not separate into factors in k and in k'" % term)
        summand = (sp.Mul(*[f for f in factors if f.has(k2)]) * Ra[k2]).xreplace({k2: k})
        name = sums.setdefault(summand, sp.Symbol("rsum%d" % len(sums), real=True))
        terms.append(sp.Mul(*[f for f in factors if not f.has(k2)]) * name)
    return sp.factor_terms(sp.Add(*terms)), tuple((name, summand) for summand, name in sums.items())


def _tsum_names():
    return {sp.Sum(t[q], (q, 1, K)): TSUM for q in (k, m, p)}


def _in_terms_of_y_display(error, loss):
    """E_n with the outputs named y_k, as PRML prints it."""
    f = _output(loss, m)
    return error.xreplace({f: y[m]}) if loss.output != "identity" else error.xreplace({a[m]: y[m]})


def kernel_forms(loss, error, delta_y, lam_y, jacobian):
    """The per-output expressions the kernels evaluate, made overflow-free.

    'y': y_k from a_k (and lse); 'e': the k-th term of E_n; 'delta': δ_k; 'lambda': Λ_kk' and
    'jacobian': ∂y_k/∂a_k' (5.75–5.77), both with their diagonals rewritten by _complement_safe.
    Σ_m t_m is named ``tsum`` and log Σ_m exp(a_m) is named ``lse`` (= amax + lsum).
    """
    tsum = _tsum_names()
    if loss.output == "softmax":
        y_k = sp.exp(a[k] - LSE)
        term = sp.expand(sp.expand_log(error.function, force=True)).subs(sp.log(_softmax_sum()), LSE)
    else:
        y_k = make_safe(_output(loss, k))
        term = make_safe(sp.expand_log(error.function, force=True))
    term = term.xreplace({a[m]: a[k], t[m]: t[k]})
    lam = lam_y.xreplace(tsum)
    if loss.output != "identity":
        lam = _complement_safe(lam, _complement(loss))
        jacobian = _complement_safe(jacobian, _complement(loss))
    return {"y": y_k, "e": term, "delta": delta_y.xreplace(tsum), "lambda": lam, "jacobian": jacobian}


def _complement(loss):
    """1 − y_k from a_k without cancellation: σ(−a_k) (logistic), −expm1((a_k − amax) − lsum) (softmax).
    Where y_k is within rounding of 1, 1 − y_k computed from y_k is 0 or a few ulps of 1: every digit
    lost."""
    if loss.output == "logistic":
        return make_safe(sigmoid(-a[k]))
    return softmax_complement(a[k] - AMAX, LSUM)   # not a_k − lse: amax + lsum rounds lsum away at the max


def _complement_safe(expr, complement):
    """A per-(k, k') output-layer expression (Λ_kk', ∂y_k/∂a_k') whose diagonal keeps its digits as
    y_k → 1.

    The diagonal (k' = k, I_kk' = 1) of Λ (and of ∂y/∂a, the same without Σt) is a polynomial P(y_k)
    that vanishes at y_k = 1 (softmax: Σt (y_k − y_k²); logistic: y_k − y_k²): evaluated as written it
    cancels to 0 once y_k rounds to 1,
    although its value, y_k (1 − y_k) Σt, is positive. It is rewritten as −(1 − y_k) Q(y_k) with
    Q = P / (y_k − 1) and 1 − y_k = ``complement``; the off-diagonal part (I_kk' = 0) has no such
    cancellation and is kept. Returns I_kk' · diagonal + (1 − I_kk') · off-diagonal, the same function."""
    delta_kk = sp.KroneckerDelta(k, k2)
    u = sp.Symbol("u")
    diagonal = expr.subs(delta_kk, 1).xreplace({y[k2]: y[k], t[k2]: t[k]})
    off = expr.subs(delta_kk, 0)
    P = sp.expand(diagonal.xreplace({y[k]: u}))
    if P.has(k2) or not P.is_polynomial(u) or sp.simplify(P.subs(u, 1)) != 0:
        raise DerivationError("the diagonal of %s is not a polynomial in y_k that vanishes at y_k = 1" % expr)
    Q, remainder = sp.div(P, u - 1, u)
    assert remainder == 0
    safe_diagonal = -complement * sp.factor_terms(Q.xreplace({u: y[k]}))
    return delta_kk * safe_diagonal + (1 - delta_kk) * off
