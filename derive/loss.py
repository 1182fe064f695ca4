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
Rfac = sp.IndexedBase(sp.Symbol("R"))
dy_da = sp.IndexedBase(sp.Symbol(r"\frac{\partial y}{\partial a^{(L)}}"))
E_n = sp.Symbol("E_n")

#: Names of the per-sample reductions the kernels compute before the per-output expressions.
LSE = sp.Symbol("lse", real=True)        # log Σ_m exp(a_m), with the maximum shifted out: amax + lsum
AMAX = sp.Symbol("amax", real=True)      # max_m a_m
LSUM = sp.Symbol("lsum", real=True)      # log Σ_m exp(a_m − amax), in [0, log d_L]
TSUM = sp.Symbol("tsum", real=True)      # Σ_m t_m


@dataclass(frozen=True)
class LossDerivation:
    """The output layer of one loss. ``kernel`` maps 'y', 'e', 'delta', 'lambda', 'jacobian', 'r_delta',
    'lambda_factor' and 'lambda_sign' (R and s of Λ = s RᵀR, see :func:`lambda_factor`) to
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
        return _reductions(value for key, value in self.kernel.items() if key in ("y", "e", "delta", "lambda"))

    @property
    def jacobian_uses(self):
        """The per-sample reductions ('lse') that the kernel form of ∂y_k/∂a_k' needs."""
        return _reductions([self.kernel["jacobian"]])

    @property
    def factor_uses(self):
        """The per-sample reductions ('lse', 'tsum') that the kernel forms of Λ's factor and its sign need."""
        return _reductions([self.kernel["lambda_factor"], self.kernel["lambda_sign"]])

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
    factor, factor_sign = lambda_factor(lam_y, loss)
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
        Equation("5.92L", "Lambda_factor", "Λ factored: Λ_kk' = %sΣ_m R_mk R_mk' with this R, so that the outer "
                 "product (5.85L) is a sum of %sF_mᵀ F_m over the rows F_m of R ∂a⁽ᴸ⁾/∂w, the rank-one terms of "
                 "its sequential inverse (5.87–5.89)" % ((_sign_text(factor_sign),) * 2),
                 Rfac[k, k2], factor, S_LOSS),
    )
    tsum = _tsum_names()
    kernel = kernel_forms(loss, error, delta_y, lam_y, jacobian)
    kernel["lambda_factor"], kernel["lambda_sign"] = factor_kernel_forms(loss, factor, factor_sign)
    kernel["r_delta"] = r_delta.xreplace(tsum)
    return LossDerivation(loss=loss, equations=equations, kernel=kernel,
                          r_sums=tuple((name, summand.xreplace(tsum)) for name, summand in r_sums))


def lambda_times(lam):
    """Σ_k' Λ_kk' R{a}_k' in closed form, for Λ (in y, t, Σ t and I_kk') of one loss.

    Each term of the expanded Λ either holds I_kk' — it contributes the term at k' = k times R{a}_k — or
    is a product of factors in k and factors in k' — it contributes the factors in k times the per-sample
    sum Σ_k' (factors in k') R{a}_k', which gets a name (rsum0, rsum1, ...). Returns (the closed form,
    ((name, summand written in index k), ...)). A term whose factors mix k and k' is refused."""
    diagonal, others = _identity_terms(lam)
    terms, sums = [term * Ra[k] for term in diagonal], {}
    for term in others:
        factors = sp.Mul.make_args(term)
        if any(f.has(k) and f.has(k2) for f in factors):
            raise DerivationError("Λ term %s does not separate into factors in k and in k'" % term)
        summand = (sp.Mul(*[f for f in factors if f.has(k2)]) * Ra[k2]).xreplace({k2: k})
        name = sums.setdefault(summand, sp.Symbol("rsum%d" % len(sums), real=True))
        terms.append(sp.Mul(*[f for f in factors if not f.has(k2)]) * name)
    return sp.factor_terms(sp.Add(*terms)), tuple((name, summand) for summand, name in sums.items())


def lambda_factor(lam, loss):
    """(R_kk', s) with Λ_kk' = s Σ_m R_mk R_mk' and s = ±1, for Λ (in y, t and I_kk') of ``loss``.

    Λ must be a diagonal plus at most one symmetric rank-one term, σ (e_k I_kk' − u_k u_k') with σ free
    of k and k' (Σ_m t_m for ce). Then R = √|σ| (√e_k I_kk' − θ u_k u_k' / √e_k) and s = sign σ, where
    θ = (1 − √(1 − q)) / q and q = Σ_k u_k² / e_k solve RᵀR = diag(e) − u uᵀ; q must evaluate to a
    number: for softmax outputs Σ_k y_k = 1 gives q = 1 and θ = 1, R = √|Σt| (√y_k I_kk' − √y_k y_k').
    The kernels use R instead of an eigendecomposition of each sample's Λ: its entries are products of
    √y and y, so every entry of the outer product keeps its relative accuracy (an eigendecomposition is
    accurate only relative to the largest eigenvalue)."""
    diagonal, rank_one = _identity_terms(lam)
    diagonal = sp.factor_terms(sp.Add(*diagonal))
    sigma, e = diagonal.as_independent(k, as_Add=False)
    if len(rank_one) > 1:
        raise DerivationError("Λ = %s is not a diagonal plus one rank-one term" % lam)
    R = sp.KroneckerDelta(k, k2) * sp.sqrt(e)
    if rank_one:
        u = _symmetric_factor(rank_one[0], sigma)
        q = sp.Sum(sp.powsimp(u ** 2 / e), (k, 1, K)).doit()
        if loss.output == "softmax":
            q = q.subs(sp.Sum(y[k], (k, 1, K)), 1)
        if not q.is_number or not 0 < q <= 1:
            raise DerivationError("Λ = %s: q = Σ_k u_k²/e_k = %s is not a number in (0, 1]" % (lam, q))
        theta = (1 - sp.sqrt(1 - q)) / q
        R -= theta * sp.powsimp(u / sp.sqrt(e)) * u.xreplace({k: k2})
    return sp.sqrt(sp.Abs(sigma)) * R, sp.sign(sigma)


def _identity_terms(lam):
    """The terms of the expanded Λ split into (those that hold I_kk', with I_kk' taken out and k' written
    k; the others, unchanged)."""
    diagonal, others = [], []
    for term in sp.Add.make_args(sp.expand(lam)):
        factors = sp.Mul.make_args(term)
        deltas = [f for f in factors if isinstance(f, sp.KroneckerDelta) and set(f.args) == {k, k2}]
        if deltas:
            diagonal.append(sp.Mul(*[f for f in factors if f is not deltas[0]]).xreplace({k2: k}))
        else:
            others.append(term)
    return diagonal, others


def _symmetric_factor(term, sigma):
    """u_k with term = −σ u_k u_k', or a DerivationError."""
    ratio = sp.factor_terms(-term / sigma)
    in_k = sp.Mul(*[f for f in sp.Mul.make_args(ratio) if f.has(k)])
    in_k2 = sp.Mul(*[f for f in sp.Mul.make_args(ratio) if f.has(k2)])
    rest = sp.simplify(ratio / (in_k * in_k2))
    if in_k2.xreplace({k2: k}) != in_k or rest.has(k, k2) or not rest.is_positive:
        raise DerivationError("Λ term %s is not −σ u_k u_k' (σ = %s)" % (term, sigma))
    return sp.sqrt(rest) * in_k


def _sign_text(sign):
    """The sign s of Λ = s RᵀR as the equation's description shows it ("" for s = 1)."""
    if sign == 1:
        return ""
    (sigma,) = sign.args
    return "sgn(Σ_m t_m) " if sigma == sp.Sum(t[m], (m, 1, K)) else "sgn(%s) " % sp.sstr(sigma)


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


def factor_kernel_forms(loss, factor, sign):
    """The kernel forms of Λ's factor R and its sign (see lambda_factor): Σ_m t_m named ``tsum``, and,
    where the diagonal R_kk vanishes at y_k = 1 (softmax: √y_k (1 − y_k)), 1 − y_k as the complement,
    as _complement_safe does for Λ."""
    tsum = _tsum_names()
    factor, sign = factor.xreplace(tsum), sign.xreplace(tsum)
    if loss.output == "identity":
        return factor, sign
    complement = _complement(loss)
    factor = _roots_complement_safe(factor, complement)
    delta_kk = sp.KroneckerDelta(k, k2)
    diagonal = factor.subs(delta_kk, 1).xreplace({y[k2]: y[k]})
    safe_diagonal = _without_root_at_one(diagonal, complement)
    if safe_diagonal is not None:
        factor = delta_kk * safe_diagonal + (1 - delta_kk) * factor.subs(delta_kk, 0)
    return factor, sign


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
    diagonal = expr.subs(delta_kk, 1).xreplace({y[k2]: y[k], t[k2]: t[k]})
    off = expr.subs(delta_kk, 0)
    safe_diagonal = _without_root_at_one(diagonal, complement)
    if safe_diagonal is None:
        raise DerivationError("the diagonal of %s is not a function of y_k that vanishes at y_k = 1" % expr)
    return delta_kk * safe_diagonal + (1 - delta_kk) * off


def _without_root_at_one(expr, complement):
    """−(1 − y_k) Q(y_k) with Q = expr / (y_k − 1) in lowest terms and 1 − y_k = ``complement``, for an
    ``expr`` that vanishes at y_k = 1 and whose quotient by y_k − 1 cancels (a polynomial in y_k, or
    √y_k times one); None for any other ``expr``."""
    u = sp.Symbol("u", positive=True)
    P = sp.expand(expr.xreplace({y[k]: u}))
    if P.has(k2) or not P.has(u) or sp.simplify(P.subs(u, 1)) != 0:
        return None
    Q = sp.cancel(P / (u - 1))
    if sp.fraction(sp.together(Q))[1].has(u):
        return None
    return -complement * sp.factor_terms(Q.xreplace({u: y[k]}))


def _roots_complement_safe(expr, complement):
    """``expr`` with each √(P(y_k)) whose P vanishes at y_k = 1 (logistic: √(y_k − y_k²)) evaluated as
    √(−(1 − y_k) Q(y_k)) with 1 − y_k = ``complement`` (see _without_root_at_one)."""
    def safe(root):
        inner = _without_root_at_one(root.base, complement)
        return root if inner is None else sp.sqrt(inner)

    return expr.replace(lambda e: isinstance(e, sp.Pow) and e.exp == sp.S.Half, safe)
