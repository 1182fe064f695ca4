"""Specification tests of the output layer (derive.loss): δ⁽ᴸ⁾, Λ and ∂y/∂a of each loss against the
reference table (PRML 5.54, 5.75–5.77 and the Λ column), and a numerical check of the kernel forms
against finite differences of independently written error functions.
"""
import dataclasses

import mpmath
import numpy as np
from conftest import mp_output_derivatives, np_sigmoid, np_softplus
import pytest
import sympy as sp

from conftest import equation_mismatch
from derive.loss import derive_loss

K_SYMBOLIC = "d_{L}"
SIZES = {K_SYMBOLIC: 3}

k, k2 = sp.symbols("k k'", integer=True)
m = sp.Symbol("mu", integer=True)  # a summation index of the printed forms
K = sp.Symbol(K_SYMBOLIC, integer=True, positive=True)
a = sp.IndexedBase(sp.Symbol("a^{(L)}"))
y = sp.IndexedBase(sp.Symbol("y"))
t = sp.IndexedBase(sp.Symbol("t"))
Ra = sp.IndexedBase(sp.Symbol(r"\mathcal{R}\{a^{(L)}\}"))
I = sp.KroneckerDelta
tsum = sp.Sum(t[m], (m, 1, K))
yRa = sp.Sum(y[m] * Ra[m], (m, 1, K))
FREE = {k: K_SYMBOLIC, k2: K_SYMBOLIC}

# loss → {key: (label, printed rhs)}, typed from the reference sheet
PRINTED = {
    "sse": {"output_jacobian": ("5.75", I(k, k2)),
            "delta_output": ("5.54", y[k] - t[k]),
            "Lambda": ("5.92L", I(k, k2)),
            "R_delta_loss": ("5.106L", Ra[k])},
    # 5.76: ∂y_k/∂a_l = I_kl σ'(a_l), σ' = y(1 − y)
    "bce": {"output_jacobian": ("5.76", I(k, k2) * y[k2] * (1 - y[k2])),
            "delta_output": ("5.54", y[k] - t[k]),
            "Lambda": ("5.92L", I(k, k2) * y[k] * (1 - y[k])),
            "R_delta_loss": ("5.106L", y[k] * (1 - y[k]) * Ra[k])},
    "ce": {"output_jacobian": ("5.77", I(k, k2) * y[k] - y[k] * y[k2]),
           "delta_output": ("5.54", y[k] * tsum - t[k]),
           "Lambda": ("5.92L", tsum * (I(k, k2) * y[k] - y[k] * y[k2])),
           # 5.106L with M = Λ: Σ_k' Λ_kk' R{a_k'}
           "R_delta_loss": ("5.106L", tsum * (y[k] * Ra[k] - y[k] * yRa))},
}

LOSSES = sorted(PRINTED)


def equation(loss, key):
    matches = [e for e in derive_loss(loss).equations if e.key == key]
    assert len(matches) == 1
    return matches[0]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("key", ["output_jacobian", "delta_output", "Lambda", "R_delta_loss"])
def test_output_layer_equation(loss, key):
    label, printed = PRINTED[loss][key]
    eq = equation(loss, key)
    assert eq.label == label
    assert not eq.definition
    mismatch = equation_mismatch(eq.rhs, printed, SIZES, FREE)
    assert mismatch is None, "%s %s: derived %s, printed %s: %s" % (loss, key, eq.rhs, printed, mismatch)


def test_error_labels():
    assert {name: equation(name, "error").label for name in LOSSES} == {"sse": "5.11", "bce": "5.21", "ce": "5.24"}


def test_every_output_equation_is_tested():
    # Lambda_factor has no printed form: test_lambda_factor_* check it against the printed Λ
    for loss in LOSSES:
        derived = {e.key for e in derive_loss(loss).equations if not e.definition}
        assert derived == set(PRINTED[loss]) | {"Lambda_factor"}


def _concrete(expr, size, values):
    """``expr`` at d_L = size with k, k' summed out of Sums and the outputs, targets replaced by values."""
    return expr.subs(K, size).doit().xreplace(values)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("target_sign", [1, -1])
def test_lambda_factor_times_itself_is_the_printed_lambda(loss, target_sign):
    """sign · Σ_m R_mk R_mk' = Λ_kk' (PRML's form) exactly, for 3 outputs, with y = f(a) written out
    (softmax: y_k = e^{a_k} / Σ e^{a_m}, so Σ y = 1 holds as an identity, not as an assumption)."""
    size = 3
    eq = equation(loss, "Lambda_factor")
    a_ = sp.symbols("a1:4", real=True)
    t_ = sp.symbols("t1:4", positive=True)
    targets_ = [target_sign * x for x in t_]
    if loss == "ce":
        outputs = [sp.exp(x) / sum(sp.exp(z) for z in a_) for x in a_]
    elif loss == "bce":
        outputs = [1 / (1 + sp.exp(-x)) for x in a_]
    else:
        outputs = list(a_)
    values = {y[n + 1]: outputs[n] for n in range(size)}
    values.update({t[n + 1]: targets_[n] for n in range(size)})
    sign = sp.sign(sum(targets_)) if loss == "ce" else sp.S.One
    assert sp.simplify(derive_loss(loss).kernel["lambda_sign"].subs(sp.Symbol("tsum", real=True), sum(targets_))
                       - sign) == 0
    R = sp.Matrix(size, size, lambda i, j: _concrete(eq.rhs.xreplace({k: i + 1, k2: j + 1}), size, values))
    lam = PRINTED[loss]["Lambda"][1]
    lam = sp.Matrix(size, size, lambda i, j: _concrete(lam.xreplace({k: i + 1, k2: j + 1}), size, values))
    assert sp.simplify(sign * R.T * R - lam) == sp.zeros(size, size)


def _factor_kernel(loss):
    kernel = derive_loss(loss).kernel
    units = range(1, NK + 1)
    return ([[_compile(kernel["lambda_factor"], {k: n, k2: n2}) for n2 in units] for n in units],
            _compile(kernel["lambda_sign"], {}))


@pytest.mark.parametrize("loss", LOSSES)
def test_lambda_factor_kernel_form_keeps_every_entry_of_lambda(loss):
    """The kernel form of R in float64, squared in 60 digits, is Λ to 1e-12 relative in every entry,
    at saturated outputs too (softmax logits 80 apart: entries of Λ from 1e-70 to 0.25); the
    eigendecomposition it replaces kept only 1e-16 of Λ's largest entry."""
    factor, sign = _factor_kernel(loss)
    rng = np.random.default_rng(3)
    rows = [rng.uniform(-5, 5, size=NK), np.array([0.0, -40.0, -80.0, -1.0]), np.array([36.0, 0.0, -3.0, 1.5]),
            np.array([30.0, 30.0, -5.0, 2.0])]
    for tv in targets(loss, rng) + ([np.array([-1.0, 0.0, 0.5, -0.25])] if loss == "ce" else []):
        for av in rows:
            yv = closed_forms(loss, av, tv)[0]
            args = (av, yv, tv, np_logsumexp(av), float(np.sum(tv)))
            R = np.array([[f(*args) for f in row] for row in factor])
            s = sign(*args)
            assert s == (np.sign(np.sum(tv)) if loss == "ce" else 1.0)
            with mpmath.workdps(60):
                Rm = mpmath.matrix(R.tolist())
                product = Rm.T * Rm
                square = np.array([[float(s * product[i, j]) for j in range(NK)] for i in range(NK)])
            lam_ref = mp_output_derivatives(loss, av, tv)[0] if loss != "sse" else np.eye(NK)
            np.testing.assert_allclose(square, lam_ref, rtol=1e-12, atol=0)


# --- numerical check of the kernel forms --------------------------------------------------------

NK = 4
LSE = sp.Symbol("lse", real=True)
TSUM = sp.Symbol("tsum", real=True)
AMAX = sp.Symbol("amax", real=True)
LSUM = sp.Symbol("lsum", real=True)


def np_logsumexp(v):
    mx = np.max(v)
    return mx + np.log(np.sum(np.exp(v - mx)))


def np_shifted(v):
    """(max_m a_m, log Σ_m exp(a_m − max)) with the sum's one term of 1 kept out of the log1p."""
    v = np.asarray(v, float)
    first = int(np.argmax(v))
    return float(v[first]), float(np.log1p(np.sum(np.exp(np.delete(v, first) - v[first]))))


MODULES = [{"sigmoid": np_sigmoid, "softplus": np_softplus,
            "softmax_complement": lambda d, s: -np.expm1(d - s)}, "numpy"]


def _flatten(expr):
    """Indexed a[1], y[2], t[3] → plain symbols, so that lambdify takes arrays of them."""
    mapping = {e: sp.Symbol("%s_%d" % ({"a^{(L)}": "a", "y": "y", "t": "t"}[str(e.base.label)], int(e.indices[0])))
               for e in expr.atoms(sp.Indexed)}
    return expr.xreplace(mapping)


def _argument_symbols():
    return ([sp.Symbol("a_%d" % n) for n in range(1, NK + 1)], [sp.Symbol("y_%d" % n) for n in range(1, NK + 1)],
            [sp.Symbol("t_%d" % n) for n in range(1, NK + 1)])


def _compile(expr, indices):
    """A float64 function f(a, y, t, lse, tsum) of the kernel expression at concrete k (and k'); amax and
    lsum, which the kernels compute with lse, are computed here from a."""
    expr = _flatten(expr.subs(indices, simultaneous=True))
    sa, sy, st = _argument_symbols()
    f = sp.lambdify([sa, sy, st, LSE, TSUM, AMAX, LSUM], expr, modules=MODULES)
    return lambda av, yv, tv, lse, ts: float(f(list(av), list(yv), list(tv), lse, ts, *np_shifted(av)))


_COMPILED = {}


def compiled_kernel(kernel):
    """The kernel expressions compiled at every concrete k (and k'), cached per kernel dict."""
    key = id(kernel)
    if key not in _COMPILED:
        assert {"y", "e", "delta", "lambda"} <= set(kernel)
        units = range(1, NK + 1)
        _COMPILED[key] = (kernel, {
            "y": [_compile(kernel["y"], {k: n}) for n in units],
            "e": [_compile(kernel["e"], {k: n}) for n in units],
            "delta": [_compile(kernel["delta"], {k: n}) for n in units],
            "lambda": [[_compile(kernel["lambda"], {k: n, k2: n2}) for n2 in units] for n in units]})
    return _COMPILED[key][1]


def evaluate_kernel(loss, av, tv, kernel=None):
    """E_n, δ, Λ evaluated from LossDerivation.kernel in float64, as a kernel would."""
    f = compiled_kernel(derive_loss(loss).kernel if kernel is None else kernel)
    lse, ts = np_logsumexp(av), float(np.sum(tv))
    yv = np.array([fy(av, np.zeros(NK), tv, lse, ts) for fy in f["y"]])
    e = sum(fe(av, yv, tv, lse, ts) for fe in f["e"])
    delta = np.array([fd(av, yv, tv, lse, ts) for fd in f["delta"]])
    lam = np.array([[fl(av, yv, tv, lse, ts) for fl in row] for row in f["lambda"]])
    return yv, e, delta, lam


def reference_error(loss, av, tv):
    """E_n(a) written independently of the engine (PRML 5.11, 5.21, 5.24), in mpmath."""
    av = [mpmath.mpf(x) for x in av]
    tv = [mpmath.mpf(x) for x in tv]
    if loss == "sse":
        return sum((x - tt) ** 2 for x, tt in zip(av, tv)) / 2
    if loss == "bce":
        total = 0
        for x, tt in zip(av, tv):
            log_y = -mpmath.log1p(mpmath.exp(-x))       # log σ(x), exact for any x in mpmath
            log_1my = -mpmath.log1p(mpmath.exp(x))      # log(1 − σ(x)) = log σ(−x)
            total -= (tt * log_y if tt else 0) + ((1 - tt) * log_1my if tt != 1 else 0)
        return total
    norm = mpmath.log(sum(mpmath.exp(x) for x in av))
    return -sum(tt * (x - norm) for x, tt in zip(av, tv))


def reference_error_numpy(loss, av, tv):
    """The same E_n in float64 numpy (moderate |a| only)."""
    av, tv = np.asarray(av, float), np.asarray(tv, float)
    if loss == "sse":
        return 0.5 * np.sum((av - tv) ** 2)
    if loss == "bce":
        yk = 1 / (1 + np.exp(-av))
        return -np.sum(np.where(tv > 0, tv * np.log(yk), 0) + np.where(tv < 1, (1 - tv) * np.log(1 - yk), 0))
    yk = np.exp(av) / np.sum(np.exp(av))
    return -np.sum(tv * np.log(yk))


def finite_differences(loss, av, tv, eps=mpmath.mpf("1e-12")):
    """δ and Λ by central differences of the reference E_n, at 40 digits."""
    with mpmath.workdps(40):
        base = [mpmath.mpf(float(x)) for x in av]

        def f(shift):
            return reference_error(loss, [b + s for b, s in zip(base, shift)], tv)

        def unit(n, scale):
            v = [mpmath.mpf(0)] * NK
            v[n] = scale
            return v

        def add(u, v):
            return [x + z for x, z in zip(u, v)]

        grad = [(f(unit(n, eps)) - f(unit(n, -eps))) / (2 * eps) for n in range(NK)]
        hess = [[(f(add(unit(n, eps), unit(n2, eps))) - f(add(unit(n, eps), unit(n2, -eps)))
                  - f(add(unit(n, -eps), unit(n2, eps))) + f(add(unit(n, -eps), unit(n2, -eps)))) / (4 * eps ** 2)
                 for n2 in range(NK)] for n in range(NK)]
        return float(f([0] * NK)), np.array(grad, dtype=float), np.array(hess, dtype=float)


def targets(loss, rng):
    if loss == "sse":
        return [rng.normal(size=NK) * 2]
    if loss == "bce":
        return [np.array([0.0, 1.0, 0.3, 1.0]), np.array([1.0, 0.0, 0.0, 0.75]), rng.uniform(0, 1, size=NK)]
    # ce: one-hot, a distribution, and rows that do not sum to one
    return [np.array([0.0, 0.0, 1.0, 0.0]), rng.dirichlet(np.ones(NK)), np.array([0.5, 2.0, 0.0, 1.25]),
            rng.uniform(0, 1, size=NK) * 0.3]


def closed_forms(loss, av, tv):
    """y, δ, Λ of the reference table, computed stably in numpy (independently of the engine)."""
    av, tv = np.asarray(av, float), np.asarray(tv, float)
    if loss == "sse":
        return av, av - tv, np.eye(NK)
    if loss == "bce":
        yv = np_sigmoid(av)
        return yv, yv - tv, np.diag(yv * (1 - yv))
    yv = np.exp(av - np_logsumexp(av))
    ts = np.sum(tv)
    return yv, yv * ts - tv, ts * (np.diag(yv) - np.outer(yv, yv))


@pytest.mark.parametrize("loss", LOSSES)
def test_kernel_matches_finite_differences(loss):
    rng = np.random.default_rng(12345)
    for tv in targets(loss, rng):
        for av in (rng.uniform(-5, 5, size=NK), np.array([-5.0, 5.0, 0.0, 2.5]), rng.normal(size=NK)):
            yv, e, delta, lam = evaluate_kernel(loss, av, tv)
            e_ref, grad, hess = finite_differences(loss, av, tv)
            np.testing.assert_allclose(e, e_ref, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(e, reference_error_numpy(loss, av, tv), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(delta, grad, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(lam, hess, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(yv, closed_forms(loss, av, tv)[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES)
def test_kernel_finite_for_large_preactivations(loss):
    rng = np.random.default_rng(7)
    rows = [np.array([1e3, -1e3, 1e3, -1e3]), np.array([-1e3, -1e3, -1e3, -1e3]),
            np.array([1e3, 999.0, -1e3, 0.0])]
    for tv in targets(loss, rng):
        for av in rows:
            yv, e, delta, lam = evaluate_kernel(loss, av, tv)
            assert np.isfinite(e) and np.all(np.isfinite(yv)) and np.all(np.isfinite(delta))
            assert np.all(np.isfinite(lam))
            y_ref, delta_ref, lam_ref = closed_forms(loss, av, tv)
            np.testing.assert_allclose(yv, y_ref, rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(delta, delta_ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(lam, lam_ref, rtol=1e-12, atol=1e-300)
            # E_n itself against the 50-digit reference (finite and correct, not only finite)
            with mpmath.workdps(50):
                e_ref = float(reference_error(loss, av, tv))
            np.testing.assert_allclose(e, e_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_lambda_and_output_jacobian_keep_their_digits_where_an_output_saturates(loss):
    # y_k within 1e-16 of 1: y_k (1 − y_k) computed from y_k would cancel to 0 (or a few ulps);
    # the kernel forms take 1 − y_k from a_k instead, and must match every entry to 1e-12 relative
    kernel = derive_loss(loss).kernel
    jacobian = [[_compile(kernel["jacobian"], {k: n, k2: n2}) for n2 in range(1, NK + 1)] for n in range(1, NK + 1)]
    tv = np.array([1.0, 0.0, 0.0, 0.0]) if loss == "ce" else np.array([1.0, 0.0, 1.0, 0.5])
    for av in (np.array([36.0, 0.0, -3.0, 1.5]), np.array([20.0, -40.0, 38.0, 0.1]), np.array([30.0, 30.0, -5.0, 2.0])):
        yv, _, _, lam = evaluate_kernel(loss, av, tv)
        jac = np.array([[f(av, yv, tv, np_logsumexp(av), float(np.sum(tv))) for f in row] for row in jacobian])
        lam_ref, jac_ref = mp_output_derivatives(loss, av, tv)
        np.testing.assert_allclose(lam, lam_ref, rtol=1e-12, atol=0)
        np.testing.assert_allclose(jac, jac_ref, rtol=1e-12, atol=0)
    # the same entries from 1 − y_k as written lose them (the check can fail)
    lam_naive = closed_forms(loss, np.array([36.0, 0.0, -3.0, 1.5]), tv)[2]
    lam_ref = mp_output_derivatives(loss, np.array([36.0, 0.0, -3.0, 1.5]), tv)[0]
    assert abs(lam_naive[0, 0] - lam_ref[0, 0]) > 0.01 * abs(lam_ref[0, 0])


def test_kernel_uses_the_reductions_it_needs():
    assert set(derive_loss("ce").uses) == {"lse", "tsum"}
    assert derive_loss("ce").r_uses == ("tsum",) and len(derive_loss("ce").r_sums) == 1
    assert derive_loss("sse").r_uses == () and derive_loss("sse").r_sums == ()
    assert derive_loss("sse").uses == ()
    assert derive_loss("bce").uses == ()


@pytest.mark.parametrize("loss", LOSSES)
def test_r_delta_kernel_is_lambda_times_r(loss):
    """The closed form of R{δ} = Λ R{a} the HVP evaluates (kernel 'r_delta' with its per-sample sums) equals
    the reference table's Λ times R{a}, for targets and pre-activations of every kind."""
    rng = np.random.default_rng(99)
    for tv in targets(loss, rng):
        for av in (rng.uniform(-5, 5, size=NK), np.array([1e3, -1e3, 999.0, 0.0])):
            rv = rng.normal(size=NK)
            yv, _, lam = closed_forms(loss, av, tv)
            np.testing.assert_allclose(evaluate_r_delta(derive_loss(loss), av, yv, tv, rv), lam @ rv,
                                       rtol=1e-12, atol=1e-12)


def test_r_delta_check_can_fail():
    """A closed form with its per-sample sum dropped (ce) is caught by that comparison."""
    output = derive_loss("ce")
    (name, _), = output.r_sums
    wrong = dataclasses.replace(output, kernel={**output.kernel, "r_delta": output.kernel["r_delta"].subs(name, 0)})
    av, tv, rv = np.array([0.3, -1.2, 2.0, 0.1]), np.array([0.5, 2.0, 0.0, 1.25]), np.array([1.0, -0.5, 0.25, 2.0])
    yv, _, lam = closed_forms("ce", av, tv)
    assert not np.allclose(evaluate_r_delta(wrong, av, yv, tv, rv), lam @ rv, rtol=1e-6, atol=1e-9)


def test_lambda_times_refuses_inseparable_terms():
    from derive.errors import DerivationError
    from derive.loss import lambda_times
    with pytest.raises(DerivationError, match="does not separate"):
        lambda_times(sp.exp(y[k] * y[k2]))


def evaluate_r_delta(output, av, yv, tv, rv):
    """R{δ} from the kernel form 'r_delta' and its sums ``r_sums``, in float64, as the kernel computes it."""
    lse, ts = np_logsumexp(av), float(np.sum(tv))
    r_syms = [sp.Symbol("r_%d" % n) for n in range(1, NK + 1)]
    sa, sy, st = _argument_symbols()

    def at(expr, n):
        expr = expr.subs(k, n).xreplace({Ra[n2]: r_syms[n2 - 1] for n2 in range(1, NK + 1)})
        f = sp.lambdify([sa, sy, st, r_syms, LSE, TSUM], _flatten(expr), modules=MODULES)
        return float(f(list(av), list(yv), list(tv), list(rv), lse, ts))

    sums = {name: sum(at(summand, n) for n in range(1, NK + 1)) for name, summand in output.r_sums}
    return np.array([at(output.kernel["r_delta"].xreplace(sums), n) for n in range(1, NK + 1)])


def test_numerical_check_can_fail():
    """A kernel with a wrong Λ (ce with Σt dropped) is caught by the finite-difference comparison."""
    kernel = dict(derive_loss("ce").kernel)
    kernel["lambda"] = kernel["lambda"].subs(TSUM, 1)
    av, tv = np.array([0.3, -1.2, 2.0, 0.1]), np.array([0.5, 2.0, 0.0, 1.25])
    _, _, _, lam = evaluate_kernel("ce", av, tv, kernel=kernel)
    _, _, hess = finite_differences("ce", av, tv)
    assert not np.allclose(lam, hess, rtol=1e-6, atol=1e-9)
