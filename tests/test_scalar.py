"""Specification tests of the scalar derivatives (derive.scalar): h', h'' of every built-in activation
against central differences of h computed independently in mpmath (50 digits), float64 safety of the
a-forms at large |a|, and the documented z-forms and kink conventions.
"""
import functools

import mpmath
import numpy as np
from conftest import np_sigmoid, np_softplus
import pytest
import scipy.special
import sympy as sp

import derive
from derive.expressions import A
from derive.scalar import Z, derive_scalar

# --- independent reference implementations of h (mpmath), one per built-in activation --------------


def mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def mp_softplus(x):
    return mpmath.log1p(mpmath.exp(x))


REFERENCE = {
    "tanh": mpmath.tanh,
    "sigmoid": mp_sigmoid,
    "softplus": mp_softplus,
    "silu": lambda x: x * mp_sigmoid(x),
    "gelu": lambda x: x / 2 * (1 + mpmath.erf(x / mpmath.sqrt(2))),
    "sin": mpmath.sin,
    "relu": lambda x: x if x > 0 else mpmath.mpf(0),
    "leaky_relu": lambda x: x if x > 0 else x / 100,
}
KINKS = {"relu": [0.0], "leaky_relu": [0.0]}

NAMES = sorted(derive.ACTIVATIONS)
POINTS = sorted(set(np.round(np.linspace(-6, 6, 41), 12)) | {-5.123, -0.731, 0.0, 1e-3, 0.4142, 2.718, 5.999})
LARGE = [-1e3, -30.0, 30.0, 1e3]
STEP = mpmath.mpf("1e-10")


# --- numpy implementations for float64 evaluation (written here, stable for every x) -------------------


NUMPY = [{"sigmoid": np_sigmoid, "softplus": np_softplus, "erf": scipy.special.erf}, "numpy"]
MPMATH = [{"sigmoid": mp_sigmoid, "softplus": mp_softplus}, "mpmath"]


def central_differences(h, x, dps=50):
    """h'(x), h''(x) by central differences with step 1e-10, computed at ``dps`` digits."""
    with mpmath.workdps(dps):
        x = mpmath.mpf(x)
        up, mid, down = h(x + STEP), h(x), h(x - STEP)
        return (up - down) / (2 * STEP), (up - 2 * mid + down) / STEP ** 2


def mp_form(expr):
    """An mpmath function of (a, z) for a form that may use a and/or z."""
    return sp.lambdify((A, Z), expr, modules=MPMATH)


def float_form(expr):
    return sp.lambdify(A, expr, modules=NUMPY)


def near_kink(name, x):
    return any(abs(x - kink) < 1e-6 for kink in KINKS.get(name, []))


def close(got, expected, rel, abs_):
    return abs(got - expected) <= max(rel * abs(expected), abs_)


# --- tests -----------------------------------------------------------------------------------------


def test_every_activation_has_a_reference():
    assert set(derive.ACTIVATIONS) == set(REFERENCE)


@pytest.mark.parametrize("name", NAMES)
def test_h_is_the_activation(name):
    s = derive_scalar(derive.ACTIVATIONS[name])
    f = mp_form(s.h)
    with mpmath.workdps(50):
        for x in POINTS:
            x = mpmath.mpf(x)
            assert close(f(x, 0), REFERENCE[name](x), 1e-40, 1e-40), (name, x)


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_match_central_differences(name):
    s = derive_scalar(derive.ACTIVATIONS[name])
    h = REFERENCE[name]
    forms = {"d1": mp_form(s.d1), "d2": mp_form(s.d2),
             "kernel_d1": mp_form(s.kernel_d1), "kernel_d2": mp_form(s.kernel_d2)}
    checked = 0
    for x in POINTS:
        if near_kink(name, x):
            continue
        d1_ref, d2_ref = central_differences(h, x)
        with mpmath.workdps(50):
            a, z = mpmath.mpf(x), h(mpmath.mpf(x))
            for form, ref in (("d1", d1_ref), ("kernel_d1", d1_ref), ("d2", d2_ref), ("kernel_d2", d2_ref)):
                got = forms[form](a, z)
                assert close(got, ref, 1e-12, 1e-12), "%s %s at a=%s: got %s, expected %s" % (
                    name, form, x, mpmath.nstr(got, 20), mpmath.nstr(ref, 20))
        checked += 1
    assert checked >= 40


@functools.lru_cache(maxsize=None)
def float64_values(name):
    """h, h', h'' of ``name`` evaluated in float64 at LARGE, and their exact values (1200 digits)."""
    s = derive_scalar(derive.ACTIVATIONS[name])
    h = REFERENCE[name]
    forms = {"h": float_form(s.h), "d1": float_form(s.d1), "d2": float_form(s.d2)}
    rows = []
    for x in LARGE:
        d1_ref, d2_ref = central_differences(h, x, dps=1200)  # exact to far below float64 at |a| = 1e3
        with mpmath.workdps(1200):
            h_ref = h(mpmath.mpf(x))
        for form, ref in (("h", h_ref), ("d1", d1_ref), ("d2", d2_ref)):
            with np.errstate(all="ignore"):
                rows.append((x, form, float(forms[form](np.float64(x))), ref))
    return rows


@pytest.mark.parametrize("name", NAMES)
def test_a_forms_finite_in_float64(name):
    for x, form, got, ref in float64_values(name):
        assert np.isfinite(got), "%s %s at a=%s is %s" % (name, form, x, got)
        # and right to within float64 resolution of the unit scale
        assert close(mpmath.mpf(got), ref, 1e-12, 1e-15), "%s %s at a=%s: got %r, expected %s" % (
            name, form, x, got, mpmath.nstr(ref, 17))


@pytest.mark.parametrize("name", NAMES)
def test_a_forms_accurate_in_float64(name):
    """At a = ±30, ±1e3: relative accuracy 1e-9, or absolute 1e-15 where h', h'' are tiny next to their
    O(1) scale (1 - tanh(30)**2 is 0.0 in float64, 3.5e-26 exactly: a rounding of the O(1) quantity)."""
    wrong = ["%s at a=%s: got %r, exact %s" % (form, x, got, mpmath.nstr(ref, 8))
             for x, form, got, ref in float64_values(name) if not close(mpmath.mpf(got), ref, 1e-9, 1e-15)]
    assert not wrong, "%s: %s" % (name, "; ".join(wrong))


def test_z_forms():
    scalars = {name: derive_scalar(derive.ACTIVATIONS[name]) for name in NAMES}
    assert scalars["tanh"].d1_z is not None and sp.expand(scalars["tanh"].d1_z - (1 - Z ** 2)) == 0
    assert scalars["sigmoid"].d1_z is not None and sp.expand(scalars["sigmoid"].d1_z - (Z - Z ** 2)) == 0
    # h'' in z: tanh'' = -2 z (1 - z²); σ'' = z (1 - z)(1 - 2z)
    assert sp.expand(scalars["tanh"].d2_z - (-2 * Z * (1 - Z ** 2))) == 0
    assert sp.expand(scalars["sigmoid"].d2_z - Z * (1 - Z) * (1 - 2 * Z)) == 0
    assert scalars["sin"].d1_z is None
    assert scalars["tanh"].kernel_d1 == scalars["tanh"].d1_z
    assert scalars["sin"].kernel_d1 == scalars["sin"].d1


def test_kink_conventions():
    relu = derive_scalar(derive.ACTIVATIONS["relu"])
    leaky = derive_scalar(derive.ACTIVATIONS["leaky_relu"])
    assert relu.d1.subs(A, 0) == 0
    assert leaky.d1.subs(A, 0) == sp.Rational(1, 100)
    assert relu.d1.subs(A, 2) == 1 and relu.d1.subs(A, -2) == 0
    assert leaky.d1.subs(A, 2) == 1 and leaky.d1.subs(A, -2) == sp.Rational(1, 100)
    assert relu.d2 == 0 and leaky.d2 == 0
    assert not relu.d1.has(sp.DiracDelta) and not leaky.d1.has(sp.DiracDelta)
    # the float64 forms agree with the convention at the kink
    assert float(float_form(relu.d1)(np.float64(0.0))) == 0.0
    assert float(float_form(leaky.d1)(np.float64(0.0))) == 0.01


def test_an_expression_that_sympys_simplify_fails_on_still_derives():
    """sp.simplify raised ValueError("The argument 'nan' is not comparable") on h' of this expression (found
    by the random-expression test); the unsimplified derivative is exact and is kept."""
    text = "Piecewise((a, a > 0), (Max(Max(Abs(1), Max(a, a)), (sign(a) + sqrt(2))), True))"
    s = derive_scalar(derive.Activation.from_expression(text))

    def h(x):
        return x if x > 0 else max(1, x, mpmath.sign(x) + mpmath.sqrt(2))

    f1, f2 = mp_form(s.d1), mp_form(s.d2)
    for x in (-3.0, -0.5, 0.25, 1.5):
        d1_ref, d2_ref = central_differences(h, x)
        with mpmath.workdps(50):
            assert close(f1(mpmath.mpf(x), 0), d1_ref, 1e-12, 1e-12), x
            assert close(f2(mpmath.mpf(x), 0), d2_ref, 1e-12, 1e-12), x


def test_a_complex_valued_derivative_is_refused_before_any_code_is_generated():
    # h = (-1)**a is real at integers only; its derivative carries I*pi, which no float64 kernel computes
    with pytest.raises(derive.ExpressionError, match="h' of activation .* is complex-valued"):
        derive_scalar(derive.Activation.from_expression("(-1)**a"))


def test_a_derivative_that_is_not_finite_is_refused_before_any_code_is_generated():
    # h = 0**a is 0 for a > 0; SymPy's derivative is nan, which every kernel would refuse at every a
    with pytest.raises(derive.ExpressionError, match="h' of activation .* is not finite"):
        derive_scalar(derive.Activation.from_expression("0**a"))


def test_an_expression_too_deep_for_sympys_recursion_is_a_derivation_error():
    # accepted by the parser (199 levels < MAX_DEPTH), but SymPy's differentiation exhausts Python's recursion
    text = "sin(" * 199 + "a" + ")" * 199
    with pytest.raises(derive.DerivationError, match="too deeply nested"):
        derive_scalar(derive.Activation.from_expression(text))


def test_softplus_does_not_overflow():
    s = derive_scalar(derive.ACTIVATIONS["softplus"])
    with np.errstate(over="raise", invalid="raise"):
        assert float(float_form(s.h)(np.float64(1000.0))) == 1000.0
        assert float(float_form(s.h)(np.float64(-1000.0))) == 0.0


MISH_TEXT = "a*tanh(log(1 + exp(a)))"


def mish_reference(x):
    return x * mpmath.tanh(mpmath.log1p(mpmath.exp(x)))


@functools.lru_cache(maxsize=None)
def scalar_of(expr):
    """derive_scalar of an activation with this expression (its derivatives depend on nothing else);
    cached because deriving mish takes several seconds."""
    return derive_scalar(derive.Activation(name="mish", expr=expr))


def check_mish(activation):
    s = scalar_of(activation.expr)
    f1, f2 = mp_form(s.d1), mp_form(s.d2)
    for x in (-4.5, -1.3, 0.0, 0.7, 3.2):
        d1_ref, d2_ref = central_differences(mish_reference, x)
        with mpmath.workdps(50):
            assert close(f1(mpmath.mpf(x), 0), d1_ref, 1e-12, 1e-12), x
            assert close(f2(mpmath.mpf(x), 0), d2_ref, 1e-12, 1e-12), x
    d1 = float_form(s.d1)
    for x in (-1e3, 1e3):
        with np.errstate(all="ignore"):
            value = float(d1(np.float64(x)))
        assert np.isfinite(value), (x, value)
        d1_ref, _ = central_differences(mish_reference, x, dps=1200)
        assert close(mpmath.mpf(value), d1_ref, 1e-9, 1e-300), (x, value, mpmath.nstr(d1_ref, 17))


def test_user_expression_mish():
    check_mish(derive.Activation.from_expression(MISH_TEXT))


def test_mish_expression_derives():
    """The same activation built without the parser (separates the derivation from parsing)."""
    check_mish(derive.Activation(name="mish", expr=A * sp.tanh(sp.log(1 + sp.exp(A))), expression=MISH_TEXT))
