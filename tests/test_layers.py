"""Specification tests of the layer equations: every derived (non-definition) equation of
``derive.derivation.generic_equations()`` against the form printed in PRML §5.3–5.4, as restated in
``shared/reference/prml-hessian-equations.md``.

The printed forms below are typed from the reference sheet, in the engine's symbols (derive.notation);
they are never taken from the engine's output. ``same_equation`` (conftest.py) compares them at small
concrete sizes and every combination of concrete free index values.

PRML writes its two-layer R-operator forms (5.101, 5.103) without biases (a bias is a weight from a unit
fixed at 1); the project's network has explicit biases, so their direction v_b appears as that weight's
term (R{a⁽ˡ⁾} = V⁽ˡ⁾z⁽ˡ⁻¹⁾ + W⁽ˡ⁾R{z⁽ˡ⁻¹⁾} + v_b⁽ˡ⁾ on the reference sheet).
"""
import pytest
import sympy as sp

from conftest import equation_mismatch, same_equation
from derive.derivation import generic_equations
from derive.functions import h1, h2
from derive.notation import i, i2, j, j2, k, k2, layer

# --- symbols (the engine's notation; no formulas) --------------------------------------------------

X = layer("0", inputs=True)
L1, L2 = layer("1"), layer("2")
LP, LL, LN = layer("l-1"), layer("l"), layer("l+1")
LM1, LM = layer("m-1"), layer("m")
LOUT = layer("L")

E_n = sp.Symbol("E_n")
I = sp.KroneckerDelta


def IB(name):
    return sp.IndexedBase(sp.Symbol(name))


J_IN = IB("J")
DY_1 = IB(r"\frac{\partial y}{\partial a^{(1)}}")
DY_L = IB(r"\frac{\partial y}{\partial a^{(l)}}")
DY_UP = IB(r"\frac{\partial y}{\partial a^{(l+1)}}")
G_BELOW = IB("G^{(m-1,l)}")
G_ML = IB("G^{(m,l)}")
JAC = IB(r"\frac{\partial a^{(L)}}{\partial w}")
D2A = IB(r"\frac{\partial^2 a^{(L)}}{\partial w \partial w}")
LAMBDA = IB(r"\Lambda")
W_PARAM = IB("w")
B = IB("b")
DY_W = IB(r"\frac{\partial y}{\partial w}")
D2Y = sp.Symbol(r"\frac{\partial^2 y}{\partial w_r \partial w_s}")
Y, T = sp.symbols("y t", real=True)
WR, WS = sp.symbols("w_r w_s", real=True)
r, s = sp.symbols("r s", integer=True)
R = sp.Function(r"\mathcal{R}")

# dummy summation indices of the printed forms (deliberately not the engine's names)
p, q, u = sp.symbols("p q u", integer=True)


def Σ(body, index, upper):
    return sp.Sum(body, (index, 1, upper))


def dE(*wrt):
    return sp.Derivative(E_n, *wrt, evaluate=False)


#: Concrete sizes: a different value per layer, so that an index summed over the wrong layer shows.
SIZES = {"d_{0}": 2, "d_{1}": 3, "d_{2}": 4,
         "d_{l-1}": 2, "d_{l}": 3, "d_{l+1}": 4,
         "d_{m-1}": 4, "d_{m}": 5, "d_{L}": 3, "W": 2}

# --- the printed forms: key → (PRML label, lhs, rhs, free index ranges) ------------------------------

h1_l, h2_l = h1(LL.a[j]), h2(LL.a[j])

PRINTED = {
    # 5.3.1 backpropagation
    "weight_gradient": ("5.53", dE(LL.w[j, i]), LL.delta[j] * LP.z[i],
                        {j: "d_{l}", i: "d_{l-1}"}),
    "bias_gradient": ("5.53", dE(LL.b[j]), LL.delta[j], {j: "d_{l}"}),
    "delta_hidden": ("5.56", LL.delta[j], h1_l * Σ(LN.w[k, j] * LN.delta[k], k, LN.size),
                     {j: "d_{l}"}),
    # 5.3.4 Jacobian: J_ki = Σ_j w_ji ∂y_k/∂a_j;  ∂y_k/∂a_j = h'(a_j) Σ_l w_lj ∂y_k/∂a_l
    "jacobian_inputs": ("5.73", J_IN[k, i], Σ(L1.w[p, i] * DY_1[k, p], p, L1.size),
                        {k: 2, i: "d_{0}"}),
    "jacobian_backprop": ("5.74", DY_L[k, j], h1_l * Σ(LN.w[p, j] * DY_UP[k, p], p, LN.size),
                          {k: 2, j: "d_{l}"}),
    # 5.4.1 diagonal
    "diag_weight": ("5.79", dE((LL.w[j, i], 2)), LL.M[j, j] * LP.z[i] ** 2, {j: "d_{l}", i: "d_{l-1}"}),
    "diag_M": ("5.80", LL.M[j, j],
               h1_l ** 2 * Σ(Σ(LN.w[p, j] * LN.w[q, j] * LN.M[p, q], q, LN.size), p, LN.size)
               + h2_l * Σ(LN.w[p, j] * LN.delta[p], p, LN.size),
               {j: "d_{l}"}),
    "diag_becker_lecun": ("5.81", LL.M[j, j],
                          h1_l ** 2 * Σ(LN.w[p, j] ** 2 * LN.M[p, p], p, LN.size)
                          + h2_l * Σ(LN.w[p, j] * LN.delta[p], p, LN.size),
                          {j: "d_{l}"}),
    # 5.4.2 outer product
    "outer_full": ("5.83", dE(WR, WS), DY_W[r] * DY_W[s] + (Y - T) * D2Y, {r: "W", s: "W"}),
    "outer_sse": ("5.84", dE(WR, WS), B[r] * B[s], {r: "W", s: "W"}),
    "outer_bce": ("5.85", dE(WR, WS), Y * (1 - Y) * B[r] * B[s], {r: "W", s: "W"}),
    "outer_general": ("5.84L", dE(W_PARAM[r], W_PARAM[s]),
                      Σ(LOUT.delta[p] * D2A[p, r, s], p, LOUT.size)
                      + Σ(Σ(JAC[p, r] * LAMBDA[p, q] * JAC[q, s], q, LOUT.size), p, LOUT.size),
                      {r: "W", s: "W"}),
    "gauss_newton": ("5.85L", dE(W_PARAM[r], W_PARAM[s]),
                     Σ(Σ(JAC[p, r] * LAMBDA[p, q] * JAC[q, s], q, LOUT.size), p, LOUT.size),
                     {r: "W", s: "W"}),
    # 5.4.5 exact: two layers, inputs i, hidden j, outputs k
    "hessian_22": ("5.93", dE(L2.w[k, j], L2.w[k2, j2]), L1.z[j] * L1.z[j2] * L2.M[k, k2],
                   {k: "d_{2}", j: "d_{1}", k2: "d_{2}", j2: "d_{1}"}),
    "hessian_11": ("5.94", dE(L1.w[j, i], L1.w[j2, i2]),
                   X.z[i] * X.z[i2] * h2(L1.a[j2]) * I(j, j2) * Σ(L2.w[p, j2] * L2.delta[p], p, L2.size)
                   + X.z[i] * X.z[i2] * h1(L1.a[j2]) * h1(L1.a[j])
                   * Σ(Σ(L2.w[q, j2] * L2.w[p, j] * L2.M[p, q], q, L2.size), p, L2.size),
                   {j: "d_{1}", i: "d_{0}", j2: "d_{1}", i2: "d_{0}"}),
    "hessian_12": ("5.95", dE(L1.w[j, i], L2.w[k, j2]),
                   X.z[i] * h1(L1.a[j]) * (L2.delta[k] * I(j, j2)
                                           + L1.z[j2] * Σ(L2.w[q, j] * L2.M[k, q], q, L2.size)),
                   {j: "d_{1}", i: "d_{0}", k: "d_{2}", j2: "d_{1}"}),
    # L layers: M⁽ˡ⁾ = D W⁽ˡ⁺¹⁾ᵀ M⁽ˡ⁺¹⁾ W⁽ˡ⁺¹⁾ D + diag(h''(a⁽ˡ⁾) ⊙ W⁽ˡ⁺¹⁾ᵀ δ⁽ˡ⁺¹⁾)
    "M_hidden": ("5.92L", LL.M[j, j2],
                 h1(LL.a[j]) * h1(LL.a[j2])
                 * Σ(Σ(LN.w[p, j] * LN.M[p, q] * LN.w[q, j2], q, LN.size), p, LN.size)
                 + I(j, j2) * h2(LL.a[j]) * Σ(LN.w[p, j] * LN.delta[p], p, LN.size),
                 {j: "d_{l}", j2: "d_{l}"}),
    "hessian_same_layer": ("5.93L", dE(LL.w[j, i], LL.w[j2, i2]), LP.z[i] * LP.z[i2] * LL.M[j, j2],
                           {j: "d_{l}", i: "d_{l-1}", j2: "d_{l}", i2: "d_{l-1}"}),
    # G⁽ᵐˡ⁾ = W⁽ᵐ⁾ D⁽ᵐ⁻¹⁾ G⁽ᵐ⁻¹ˡ⁾
    "G_recursion": ("5.95L", G_ML[k, j], Σ(LM.w[k, p] * h1(LM1.a[p]) * G_BELOW[p, j], p, LM1.size),
                    {k: "d_{m}", j: "d_{l}"}),
    # z⁽ˡ⁻¹⁾_i [ (M⁽ᵐ⁾ G⁽ᵐˡ⁾)_kj z⁽ᵐ⁻¹⁾_j' + δ⁽ᵐ⁾_k h'(a⁽ᵐ⁻¹⁾_j') G⁽ᵐ⁻¹ˡ⁾_j'j ]
    "hessian_cross_layer": ("5.95L", dE(LL.w[j, i], LM.w[k, j2]),
                            LP.z[i] * (Σ(LM.M[k, p] * G_ML[p, j], p, LM.size) * LM1.z[j2]
                                       + LM.delta[k] * h1(LM1.a[j2]) * G_BELOW[j2, j]),
                            {j: "d_{l}", i: "d_{l-1}", k: "d_{m}", j2: "d_{m-1}"}),
    # 5.4.6 R-operator, two layers (identity outputs)
    "R_a_1": ("5.101", L1.Ra[j], Σ(L1.v[j, p] * X.z[p], p, X.size) + L1.vb[j], {j: "d_{1}"}),
    "R_z_1": ("5.102", L1.Rz[j], h1(L1.a[j]) * L1.Ra[j], {j: "d_{1}"}),
    "R_y": ("5.103", L2.Ra[k],
            Σ(L2.w[k, p] * L1.Rz[p], p, L1.size) + Σ(L2.v[k, p] * L1.z[p], p, L1.size) + L2.vb[k],
            {k: "d_{2}"}),
    "R_delta_out": ("5.106", L2.Rdelta[k], L2.Ra[k], {k: "d_{2}"}),
    "R_delta_1": ("5.107", L1.Rdelta[j],
                  h2(L1.a[j]) * L1.Ra[j] * Σ(L2.w[p, j] * L2.delta[p], p, L2.size)
                  + h1(L1.a[j]) * Σ(L2.v[p, j] * L2.delta[p], p, L2.size)
                  + h1(L1.a[j]) * Σ(L2.w[p, j] * L2.Rdelta[p], p, L2.size),
                  {j: "d_{1}"}),
    "R_grad_2": ("5.110", R(dE(L2.w[k, j])), L2.Rdelta[k] * L1.z[j] + L2.delta[k] * L1.Rz[j],
                 {k: "d_{2}", j: "d_{1}"}),
    "R_grad_1": ("5.111", R(dE(L1.w[j, i])), X.z[i] * L1.Rdelta[j], {j: "d_{1}", i: "d_{0}"}),
    # R-operator, L layers
    "R_a": ("5.101L", LL.Ra[j],
            Σ(LL.v[j, p] * LP.z[p], p, LP.size) + Σ(LL.w[j, p] * LP.Rz[p], p, LP.size) + LL.vb[j],
            {j: "d_{l}"}),
    "R_z": ("5.102L", LL.Rz[j], h1(LL.a[j]) * LL.Ra[j], {j: "d_{l}"}),
    # R{δ⁽ᴸ⁾} = Λ R{a⁽ᴸ⁾}, with M⁽ᴸ⁾ = Λ
    "R_delta_output": ("5.106L", LOUT.Rdelta[k], Σ(LOUT.M[k, p] * LOUT.Ra[p], p, LOUT.size),
                       {k: "d_{L}"}),
    "R_delta": ("5.107L", LL.Rdelta[j],
                h2(LL.a[j]) * LL.Ra[j] * Σ(LN.w[p, j] * LN.delta[p], p, LN.size)
                + h1(LL.a[j]) * Σ(LN.v[p, j] * LN.delta[p], p, LN.size)
                + h1(LL.a[j]) * Σ(LN.w[p, j] * LN.Rdelta[p], p, LN.size),
                {j: "d_{l}"}),
    "R_weight_gradient": ("5.110L", R(dE(LL.w[j, i])), LL.Rdelta[j] * LP.z[i] + LL.delta[j] * LP.Rz[i],
                          {j: "d_{l}", i: "d_{l-1}"}),
    "R_bias_gradient": ("5.110L", R(dE(LL.b[j])), LL.Rdelta[j], {j: "d_{l}"}),
}


def inverse_update_printed(H, b):
    """PRML 5.89 as printed: H⁻¹ − H⁻¹ b bᵀ H⁻¹ / (1 + bᵀ H⁻¹ b), for explicit matrices."""
    Hi = H.inv()
    return Hi - Hi * b * b.T * Hi / (1 + (b.T * Hi * b)[0, 0])


#: Matrix equations, compared on explicit 2 × 2 symbolic matrices instead of by same_equation.
MATRIX_PRINTED = {"inverse_update": ("5.89", inverse_update_printed)}


def derived_equations():
    return [e for e in generic_equations() if not e.definition]


def derived(key):
    matches = [e for e in generic_equations() if e.key == key]
    assert len(matches) == 1, "expected one equation with key %r, found %d" % (key, len(matches))
    return matches[0]


# --- tests -----------------------------------------------------------------------------------------


def test_every_derived_equation_has_a_printed_form():
    derived_keys = {e.key for e in derived_equations()}
    tested = set(PRINTED) | set(MATRIX_PRINTED)
    assert derived_keys == tested, (
        "untested: %s; tested but not derived: %s" % (derived_keys - tested, tested - derived_keys))


def test_inverse_update_is_prml_5_89_and_inverts_the_rank_one_update():
    eq = derived("inverse_update")
    assert eq.label == MATRIX_PRINTED["inverse_update"][0]
    H = sp.Matrix(2, 2, lambda r, c: sp.Symbol("h%d%d" % (min(r, c), max(r, c))))
    b = sp.Matrix(2, 1, sp.symbols("b0 b1"))
    symbols = {s.name: s for s in eq.rhs.atoms(sp.MatrixSymbol)}
    explicit = eq.rhs.subs({symbols["H_L"]: H, symbols["b_{L+1}"]: b}).doit().as_explicit()
    assert sp.simplify(explicit - inverse_update_printed(H, b)) == sp.zeros(2, 2)
    assert sp.simplify((H + b * b.T) * explicit) == sp.eye(2)


def test_inverse_update_test_can_fail():
    H = sp.Matrix(2, 2, lambda r, c: sp.Symbol("h%d%d" % (min(r, c), max(r, c))))
    b = sp.Matrix(2, 1, sp.symbols("b0 b1"))
    wrong = H.inv() - H.inv() * b * b.T * H.inv()  # the denominator 1 + bᵀH⁻¹b dropped
    assert sp.simplify(wrong - inverse_update_printed(H, b)) != sp.zeros(2, 2)


def test_keys_are_unique():
    keys = [e.key for e in generic_equations()]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("key", sorted(PRINTED))
def test_label(key):
    assert derived(key).label == PRINTED[key][0]
    assert not derived(key).definition


@pytest.mark.parametrize("key", sorted(PRINTED))
def test_lhs(key):
    assert derived(key).lhs == PRINTED[key][1]


@pytest.mark.parametrize("key", sorted(PRINTED))
def test_rhs_equals_printed_form(key):
    _, _, printed, free = PRINTED[key]
    eq = derived(key)
    mismatch = equation_mismatch(eq.rhs, printed, SIZES, free)
    assert mismatch is None, "%s (%s): derived %s\nprinted %s\n%s" % (eq.label, key, eq.rhs, printed, mismatch)


# --- the helper can fail ---------------------------------------------------------------------------


def test_helper_rejects_5_94_with_h2_replaced_by_h1():
    _, _, printed, free = PRINTED["hessian_11"]
    wrong = printed.replace(h2, h1)
    assert wrong != printed
    assert not same_equation(derived("hessian_11").rhs, wrong, SIZES, free)


def test_helper_rejects_5_94_without_the_kronecker_delta():
    """I_jj' matters only where j != j': the helper must try such index values."""
    _, _, printed, free = PRINTED["hessian_11"]
    wrong = printed.replace(sp.KroneckerDelta, lambda *args: sp.S.One)
    assert wrong != printed
    assert not same_equation(derived("hessian_11").rhs, wrong, SIZES, free)


def test_helper_rejects_5_107_missing_a_term():
    _, _, printed, free = PRINTED["R_delta_1"]
    wrong = printed - h1(L1.a[j]) * Σ(L2.v[p, j] * L2.delta[p], p, L2.size)
    assert not same_equation(derived("R_delta_1").rhs, wrong, SIZES, free)


def test_helper_rejects_a_sum_over_the_wrong_layer():
    _, _, printed, free = PRINTED["delta_hidden"]
    wrong = h1_l * Σ(LN.w[k, j] * LN.delta[k], k, LL.size)  # Σ over d_l instead of d_{l+1}
    assert not same_equation(derived("delta_hidden").rhs, wrong, SIZES, free)


def test_helper_rejects_transposed_weights():
    _, _, printed, free = PRINTED["R_y"]
    wrong = printed.xreplace({L2.w[k, p]: L2.w[p, k]})
    assert wrong != printed
    assert not same_equation(derived("R_y").rhs, wrong, SIZES, free)


def test_helper_uses_symmetry_of_M_only():
    """M_kk' = M_k'k is accepted, but a symmetrisation of a non-symmetric quantity (w) is not."""
    assert same_equation(LL.M[j, j2], LL.M[j2, j], SIZES, {j: "d_{l}", j2: "d_{l}"})
    assert not same_equation(LN.w[j, j2], LN.w[j2, j], SIZES, {j: "d_{l}", j2: "d_{l}"})


def test_helper_rejects_an_unranged_free_index():
    assert not same_equation(LL.delta[j] * LP.z[i], LL.delta[j] * LP.z[i], SIZES, {j: "d_{l}"})
