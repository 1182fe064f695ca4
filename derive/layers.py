"""Stage 1 — the layer equations, derived with the activation h left undefined.

In:  nothing but the notation (:mod:`derive.notation`) and the generic activation h
     (:mod:`derive.functions`).
Out: :class:`~derive.equation.Equation` objects, each with its PRML label: forward propagation
     (5.48–5.49), backpropagation (5.53–5.56), the Jacobian recursion (5.73–5.74), the diagonal
     recursion (5.79–5.81), second-order backpropagation (5.92–5.95 and the L-layer M recursion,
     same-layer and cross-layer blocks), the outer-product form (5.83–5.85 and JᵀΛJ) and the R-operator
     (5.101–5.111 and the L-layer forms).

Nothing here is a pasted formula: each right-hand side comes from :meth:`derive.calculus.Model.d` (the
chain rule through the network's definitions) or :meth:`~derive.calculus.Model.r` (Pearlmutter's R).
Only the model itself (5.48, 5.49) and the definitions of δ and M (5.51, 5.92) are stated. The
derivations are per unit and per layer; a network is never unrolled.

The two-layer forms use layers "1" (hidden) and "2" (outputs, identity output function as in PRML
5.98–5.111) over inputs x; the L-layer forms use layers "l-1", "l", "l+1" and "m" for m > l.
"""

import sympy as sp

from .calculus import Model, collapse_deltas, fresh_index, sum_over, tidy
from .equation import Equation
from .functions import h, sigmoid
from .notation import i, i2, j, j2, k, k2, layer

E_n = sp.Symbol("E_n")

S_BACKPROP = "5.3.1 Evaluation of error-function derivatives"
S_JACOBIAN = "5.3.4 The Jacobian matrix"
S_DIAGONAL = "5.4.1 Diagonal approximation"
S_OUTER = "5.4.2 Outer product approximation"
S_EXACT = "5.4.5 Exact evaluation of the Hessian"
S_ROP = "5.4.6 Fast multiplication by the Hessian"
S_FORWARD = "5.3.1 Forward propagation"


def dE(*wrt):
    """The unevaluated derivative ∂ⁿE_n/∂wrt…, used as an equation's left-hand side."""
    return sp.Derivative(E_n, *wrt, evaluate=False)


# --- the network model --------------------------------------------------------------------------


class Network:
    """The symbolic model of consecutive layers: definitions, derivative rules and sizes.

    ``layers`` are namespaces from :func:`derive.notation.layer`, lowest first; the first may be the
    inputs. δ and M of the top layer are free quantities (given by the loss); those of lower layers
    are derived.
    """

    def __init__(self, *layers):
        self.layers = layers
        definitions, rules, sizes = {}, {}, {}
        for lower, this in zip(layers, layers[1:]):
            sizes[this.a] = sizes[this.z] = sizes[this.b] = (this.size,)
            sizes[this.delta] = sizes[this.Ra] = sizes[this.Rz] = sizes[this.Rdelta] = (this.size,)
            sizes[this.vb] = (this.size,)
            sizes[this.w] = sizes[this.v] = (this.size, lower.size)
            sizes[this.M] = (this.size, this.size)
            sizes[lower.z] = (lower.size,)
            definitions[this.a] = self._pre_activation(lower, this)
            definitions[this.z] = lambda q, this=this: h(this.a[q])
            rules[this.delta] = self._delta_rule(this)
        self.model = Model(definitions, rules, sizes)

    @staticmethod
    def _pre_activation(lower, this):
        def a(q):
            s = fresh_index("s")
            return sp.Sum(this.w[q, s] * lower.z[s], (s, 1, lower.size)) + this.b[q]
        return a

    def _delta_rule(self, this):
        """dδ_q/dx = Σ_q' M_qq' da_q'/dx: the chain rule applied to the definition of M (5.92)."""
        def rule(x, q):
            q2 = fresh_index()
            return sp.Sum(this.M[q, q2] * self.model.d(this.a[q2], x), (q2, 1, this.size))
        return rule

    def d(self, expr, x):
        return self.model.d(expr, x)

    def chain_from_above(self, upper_grad, upper, x):
        """Σ_k upper_grad(k) · ∂a⁽ᵘᵖ⁾_k/∂x — the chain rule through the pre-activations of ``upper``."""
        q = fresh_index()
        return tidy(sum_over(upper_grad(q) * self.d(upper.a[q], x), q, upper.size))


# --- the layers of the two-layer network and of the L-layer recursions ----------------------------

X = layer("0", inputs=True)
L1, L2 = layer("1"), layer("2")
LP, LL, LN, LM = layer("l-1"), layer("l"), layer("l+1"), layer("m")


def _hidden_delta(net, this, upper):
    """δ_j of a hidden layer from the next layer's δ (derived: 5.55 → 5.56)."""
    return net.chain_from_above(lambda q: upper.delta[q], upper, this.a[j])


# --- equations ------------------------------------------------------------------------------------


def forward_equations():
    net = Network(LP, LL)
    return [
        Equation("5.48", "pre_activation", "pre-activation of unit j: weighted sum of the layer below, plus bias",
                 LL.a[j], net.model.definitions[LL.a](j), S_FORWARD, definition=True),
        Equation("5.49", "activation", "output of hidden unit j", LL.z[j], h(LL.a[j]), S_FORWARD, definition=True),
    ]


def backprop_equations():
    net = Network(LP, LL, LN)
    return [
        Equation("5.51", "delta_definition", "the error of unit j", LL.delta[j], dE(LL.a[j]), S_BACKPROP,
                 definition=True),
        Equation("5.53", "weight_gradient", "gradient of E_n with respect to a weight (5.50–5.53)",
                 dE(LL.w[j, i]), net.chain_from_above(lambda q: LL.delta[q], LL, LL.w[j, i]), S_BACKPROP),
        Equation("5.53", "bias_gradient", "gradient of E_n with respect to a bias (a weight from a unit fixed at 1)",
                 dE(LL.b[j]), net.chain_from_above(lambda q: LL.delta[q], LL, LL.b[j]), S_BACKPROP),
        Equation("5.56", "delta_hidden", "backpropagation of the errors to hidden unit j (5.55–5.56)",
                 LL.delta[j], _hidden_delta(net, LL, LN), S_BACKPROP),
    ]


DY = sp.IndexedBase(sp.Symbol(r"\frac{\partial y}{\partial a^{(l)}}"))
DY_UP = sp.IndexedBase(sp.Symbol(r"\frac{\partial y}{\partial a^{(l+1)}}"))
J_IN = sp.IndexedBase(sp.Symbol("J"))
DY_1 = sp.IndexedBase(sp.Symbol(r"\frac{\partial y}{\partial a^{(1)}}"))


def jacobian_equations():
    net = Network(LP, LL, LN)
    net_in = Network(X, L1)
    return [
        Equation("5.73", "jacobian_inputs", "Jacobian of outputs with respect to inputs (5.70–5.73)",
                 J_IN[k, i], net_in.chain_from_above(lambda q: DY_1[k, q], L1, X.z[i]), S_JACOBIAN),
        Equation("5.74", "jacobian_backprop", "backpropagation of ∂y_k/∂a_j to hidden unit j",
                 DY[k, j], net.chain_from_above(lambda q: DY_UP[k, q], LN, LL.a[j]), S_JACOBIAN),
    ]


def m_recursion(net, this, upper):
    """M_jj' = ∂δ_j/∂a_j' of a hidden layer, δ_j written by 5.56 (derived: the L-layer M recursion)."""
    return net.d(_hidden_delta(net, this, upper), this.a[j2])


def diagonal_equations():
    net = Network(LP, LL, LN)
    m_full = m_recursion(net, LL, LN)
    m_diag = tidy(m_full.subs(j2, j))
    approx = tidy(collapse_deltas(m_diag.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == LN.M,
        lambda e: sp.KroneckerDelta(e.indices[0], e.indices[1]) * LN.M[e.indices[0], e.indices[0]])))
    weight = net.d(net.chain_from_above(lambda q: LL.delta[q], LL, LL.w[j, i]), LL.w[j, i])
    return [
        Equation("5.79", "diag_weight", "diagonal Hessian entry of a weight", dE((LL.w[j, i], 2)), weight, S_DIAGONAL),
        Equation("5.80", "diag_M", "∂²E_n/∂a_j² from the layer above (exact)", LL.M[j, j], m_diag, S_DIAGONAL),
        Equation("5.81", "diag_becker_lecun", "Becker–LeCun: off-diagonal M of the layer above dropped",
                 LL.M[j, j], approx, S_DIAGONAL),
    ]


def exact_equations():
    two = Network(X, L1, L2)
    deep = Network(LP, LL, LN)
    first = two.chain_from_above(lambda q: L1.delta[q], L1, L1.w[j, i])
    delta1 = _hidden_delta(two, L1, L2)
    second = two.chain_from_above(lambda q: L2.delta[q], L2, L2.w[k, j])
    first_with_delta = first.subs(L1.delta[j], delta1)
    same = deep.d(deep.chain_from_above(lambda q: LL.delta[q], LL, LL.w[j, i]), LL.w[j2, i2])
    return [
        Equation("5.92", "M_definition", "second derivatives with respect to pre-activations",
                 LL.M[j, j2], dE(LL.a[j], LL.a[j2]), S_EXACT, definition=True),
        Equation("5.93", "hessian_22", "both weights in the second layer",
                 dE(L2.w[k, j], L2.w[k2, j2]), two.d(second, L2.w[k2, j2]), S_EXACT),
        Equation("5.94", "hessian_11", "both weights in the first layer",
                 dE(L1.w[j, i], L1.w[j2, i2]), two.d(first_with_delta, L1.w[j2, i2]), S_EXACT),
        Equation("5.95", "hessian_12", "one weight in each layer",
                 dE(L1.w[j, i], L2.w[k, j2]), two.d(first_with_delta, L2.w[k, j2]), S_EXACT),
        Equation("5.92L", "M_hidden", "M of a hidden layer from the layer above (second-order backpropagation)",
                 LL.M[j, j2], m_recursion(deep, LL, LN), S_EXACT),
        Equation("5.93L", "hessian_same_layer", "both weights in layer l",
                 dE(LL.w[j, i], LL.w[j2, i2]), same, S_EXACT),
    ]


LM1 = layer("m-1")
G_BELOW = sp.IndexedBase(sp.Symbol("G^{(m-1,l)}"))
G_ML = sp.IndexedBase(sp.Symbol("G^{(m,l)}"))


def cross_layer_equations():
    """∂²E_n/∂w⁽ˡ⁾_ji ∂w⁽ᵐ⁾_kj' for l < m, derived through G⁽ᵐ⁻¹ˡ⁾ = ∂a⁽ᵐ⁻¹⁾/∂a⁽ˡ⁾ (an abstract quantity)."""
    net = Network(LM1, LM)
    sizes = net.model.sizes
    sizes[LL.z] = sizes[LL.a] = (LL.size,)
    sizes[G_BELOW] = (LM1.size, LL.size)
    sizes[LM1.a] = (LM1.size,)

    def a_below(x, p):  # da⁽ᵐ⁻¹⁾_p/dx: G when x is a pre-activation of layer l, else 0 (layers below m)
        return G_BELOW[p, x.indices[0]] if isinstance(x, sp.Indexed) and x.base == LL.a else sp.S.Zero

    net.model.rules[LM1.a] = a_below
    net.model.definitions[LM1.z] = lambda q: h(LM1.a[q])
    delta_l = net.chain_from_above(lambda q: LM.delta[q], LM, LL.a[j])  # δ⁽ˡ⁾_j through layers l..m
    gradient_l = delta_l * LP.z[i]
    rhs = net.d(gradient_l, LM.w[k, j2])
    return [
        Equation("5.95L", "G_recursion", "G⁽ᵐˡ⁾ = ∂a⁽ᵐ⁾/∂a⁽ˡ⁾ from the layer below: W⁽ᵐ⁾ D⁽ᵐ⁻¹⁾ G⁽ᵐ⁻¹ˡ⁾ (G⁽ˡˡ⁾ = I)",
                 G_ML[k, j], net.d(LM.a[k], LL.a[j]), S_EXACT),
        Equation("5.95L", "hessian_cross_layer", "weights in layers l < m",
                 dE(LL.w[j, i], LM.w[k, j2]), _fold_g(rhs), S_EXACT),
    ]


def _fold_g(expr):
    """Write Σ_p w⁽ᵐ⁾_qp h'(a⁽ᵐ⁻¹⁾_p) G⁽ᵐ⁻¹ˡ⁾_pj as G⁽ᵐˡ⁾_qj."""
    def is_g(e):
        return isinstance(e, sp.Sum) and e.function.has(G_BELOW) and e.function.has(LM.w)

    def fold(e):
        w = next(f for f in sp.Mul.make_args(e.function) if isinstance(f, sp.Indexed) and f.base == LM.w)
        return G_ML[w.indices[0], j]

    return tidy(expr.replace(is_g, fold))


W_PARAM = sp.IndexedBase(sp.Symbol("w"))
r_, s_ = sp.symbols("r s", integer=True)
Y_SCALAR, T_SCALAR, A_SCALAR = sp.symbols("y t a", real=True)
B_VEC = sp.IndexedBase(sp.Symbol("b"))
JAC = sp.IndexedBase(sp.Symbol(r"\frac{\partial a^{(L)}}{\partial w}"))
D2A = sp.IndexedBase(sp.Symbol(r"\frac{\partial^2 a^{(L)}}{\partial w \partial w}"))
LAMBDA = sp.IndexedBase(sp.Symbol(r"\Lambda"))
LOUT = layer("L")
W_SIZE = sp.Symbol("W", integer=True, positive=True)


def outer_product_equations():
    """5.83–5.85 and the generalised Gauss–Newton form, by differentiating E_n twice in parameters."""
    wr, ws = sp.symbols("w_r w_s", real=True)
    y = sp.Function("y")(wr, ws)
    sse = sp.diff((y - T_SCALAR) ** 2 / 2, wr, ws)
    a = sp.Function("a")(wr, ws)
    bce = sp.diff(-(T_SCALAR * sp.log(sigmoid(a)) + (1 - T_SCALAR) * sp.log(1 - sigmoid(a))), wr, ws)
    bce_dropped = sp.simplify(bce.subs(sp.Derivative(a, wr, ws), 0)).subs(sigmoid(a), Y_SCALAR)
    sse_dropped = sse.subs(sp.Derivative(y, wr, ws), 0).subs(y, a)

    # general: a⁽ᴸ⁾_k depends on w; δ⁽ᴸ⁾ and ∂a/∂w depend on w by the chain rule (Λ by definition)
    sizes = {LOUT.delta: (LOUT.size,), JAC: (LOUT.size, W_SIZE)}
    rules = {LOUT.delta: lambda x, q: _sum_k(lambda k_: LAMBDA[q, k_] * JAC[k_, x.indices[0]], LOUT.size),
             JAC: lambda x, q, p: D2A[q, p, x.indices[0]]}
    model = Model({}, rules, sizes)
    q = fresh_index()
    grad = sp.Sum(LOUT.delta[q] * JAC[q, r_], (q, 1, LOUT.size))
    general = model.d(grad, W_PARAM[s_])
    gauss_newton = tidy(collapse_deltas(general.replace(lambda e: isinstance(e, sp.Indexed) and e.base == D2A,
                                                        lambda e: sp.S.Zero)))
    return [
        Equation("5.83", "outer_full", "Hessian of the sum-of-squares error, single output",
                 dE(wr, ws), _display_functions(sse, y, a), S_OUTER),
        Equation("5.84", "outer_sse", "outer-product (Levenberg–Marquardt) approximation, linear output",
                 dE(wr, ws), _display_functions(sse_dropped, y, a), S_OUTER),
        Equation("5.85", "outer_bce", "outer-product approximation, logistic output with cross-entropy",
                 dE(wr, ws), _display_functions(bce_dropped, y, a), S_OUTER),
        Equation("5.84L", "outer_general", "Hessian of E_n through the output pre-activations a⁽ᴸ⁾",
                 dE(W_PARAM[r_], W_PARAM[s_]), general, S_OUTER),
        Equation("5.85L", "gauss_newton", "generalised Gauss–Newton: G = JᵀΛJ (second derivatives of a⁽ᴸ⁾ dropped)",
                 dE(W_PARAM[r_], W_PARAM[s_]), gauss_newton, S_OUTER),
    ]


def _sum_k(body, upper):
    q = fresh_index()
    return sp.Sum(body(q), (q, 1, upper))


B_R, B_S = sp.IndexedBase(sp.Symbol("b"))[r_], sp.IndexedBase(sp.Symbol("b"))[s_]
DY_R, DY_S = sp.IndexedBase(sp.Symbol(r"\frac{\partial y}{\partial w}"))[r_], \
    sp.IndexedBase(sp.Symbol(r"\frac{\partial y}{\partial w}"))[s_]
D2Y = sp.Symbol(r"\frac{\partial^2 y}{\partial w_r \partial w_s}")


def _display_functions(expr, y, a):
    """Name the derivatives of the scalar output: ∂y/∂w_r → b_r (PRML's b_n = ∇y_n = ∇a_n)."""
    wr, ws = y.args
    return expr.subs({sp.Derivative(y, wr, ws): D2Y, sp.Derivative(y, wr): DY_R, sp.Derivative(y, ws): DY_S,
                      sp.Derivative(a, wr): B_R, sp.Derivative(a, ws): B_S, y: Y_SCALAR, a: A_SCALAR})


def _r(quantity):
    return sp.Function(r"\mathcal{R}")(quantity)


def r_operator_equations():
    two = Network(X, L1, L2)
    deep = Network(LP, LL, LN)
    model = two.model
    directions_2 = {L1.w: L1.v, L1.b: L1.vb, L2.w: L2.v, L2.b: L2.vb, L1.a: L1.Ra, L1.z: L1.Rz, L2.a: L2.Ra,
                    L1.delta: L1.Rdelta, L2.delta: L2.Rdelta}
    directions_l = {LL.w: LL.v, LL.b: LL.vb, LP.z: LP.Rz, LL.a: LL.Ra, LL.z: LL.Rz, LN.w: LN.v,
                    LN.delta: LN.Rdelta, LL.delta: LL.Rdelta}
    for base in (LP.Rz,):
        deep.model.sizes[base] = (LP.size,)
    delta1 = _hidden_delta(two, L1, L2)
    delta_l = _hidden_delta(deep, LL, LN)
    y_k = L2.a[k]  # identity outputs in PRML's two-layer R-operator example
    out_model = Model({}, {LOUT.delta: lambda x, q: _sum_k(lambda k_: LOUT.M[q, k_] * LOUT.Ra[k_], LOUT.size)},
                      {LOUT.delta: (LOUT.size,)})
    return [
        Equation("5.97", "R_definition", "the R-operator: directional derivative along v", _r(W_PARAM[r_]),
                 sp.IndexedBase(sp.Symbol("v"))[r_], S_ROP, definition=True),
        Equation("5.101", "R_a_1", "R-forward: first-layer pre-activations", L1.Ra[j],
                 model.r(model.definitions[L1.a](j), directions_2), S_ROP),
        Equation("5.102", "R_z_1", "R-forward: hidden unit outputs", L1.Rz[j], model.r(h(L1.a[j]), directions_2), S_ROP),
        Equation("5.103", "R_y", "R-forward: (linear) outputs", L2.Ra[k],
                 model.r(model.definitions[L2.a](k), directions_2), S_ROP),
        Equation("5.106", "R_delta_out", "R-backward: output errors δ_k = y_k − t_k", L2.Rdelta[k],
                 model.r(y_k - sp.IndexedBase("t")[k], directions_2), S_ROP),
        Equation("5.107", "R_delta_1", "R-backward: hidden errors", L1.Rdelta[j], model.r(delta1, directions_2), S_ROP),
        Equation("5.110", "R_grad_2", "Hessian-vector product, second-layer weights", _r(dE(L2.w[k, j])),
                 model.r(L2.delta[k] * L1.z[j], directions_2), S_ROP),
        Equation("5.111", "R_grad_1", "Hessian-vector product, first-layer weights", _r(dE(L1.w[j, i])),
                 model.r(L1.delta[j] * X.z[i], directions_2), S_ROP),
        Equation("5.101L", "R_a", "R-forward: pre-activations of layer l", LL.Ra[j],
                 deep.model.r(deep.model.definitions[LL.a](j), directions_l), S_ROP),
        Equation("5.102L", "R_z", "R-forward: outputs of hidden layer l", LL.Rz[j],
                 deep.model.r(h(LL.a[j]), directions_l), S_ROP),
        Equation("5.106L", "R_delta_output", "R-backward: output errors (M⁽ᴸ⁾ = Λ)", LOUT.Rdelta[k],
                 out_model.d(LOUT.delta[k], sp.Symbol("r")), S_ROP),
        Equation("5.107L", "R_delta", "R-backward: errors of hidden layer l", LL.Rdelta[j],
                 deep.model.r(delta_l, directions_l), S_ROP),
        Equation("5.110L", "R_weight_gradient", "Hessian-vector product, weights of layer l", _r(dE(LL.w[j, i])),
                 deep.model.r(LL.delta[j] * LP.z[i], directions_l), S_ROP),
        Equation("5.110L", "R_bias_gradient", "Hessian-vector product, biases of layer l", _r(dE(LL.b[j])),
                 deep.model.r(LL.delta[j], directions_l), S_ROP),
    ]


S_INVERSE = "5.4.3 Inverse Hessian"
S_FINITE = "5.4.4 Finite differences"
W_MAT = sp.Symbol("W", integer=True, positive=True)


def inverse_equations():
    """5.86–5.89: the outer-product matrix built one sample at a time, and its inverse updated by the
    Sherman–Morrison identity (5.88) — 5.89 is 5.88 with M = H_L and v = b_{L+1}."""
    H_L, H_next, M = (sp.MatrixSymbol(name, W_MAT, W_MAT) for name in ("H_L", "H_{L+1}", "M"))
    b, v = sp.MatrixSymbol("b_{L+1}", W_MAT, 1), sp.MatrixSymbol("v", W_MAT, 1)
    b_n, H_N = sp.MatrixSymbol("b_n", W_MAT, 1), sp.MatrixSymbol("H_N", W_MAT, W_MAT)
    n, N = sp.symbols("n N", integer=True, positive=True)
    identity_lhs = (M + v * v.T).I
    identity = sherman_morrison(M, v)
    return [
        Equation("5.86", "outer_sum", "the outer-product approximation as a sum over samples", H_N,
                 sp.Sum(b_n * b_n.T, (n, 1, N)), S_INVERSE, definition=True),
        Equation("5.87", "outer_update", "one more sample adds a rank-one term", H_next, H_L + b * b.T,
                 S_INVERSE, definition=True),
        Equation("5.88", "sherman_morrison", "the inverse of a rank-one update (Sherman–Morrison)",
                 identity_lhs, identity, S_INVERSE, definition=True),
        Equation("5.89", "inverse_update", "the inverse Hessian updated one sample at a time, from H_0 = αI",
                 H_next.I, identity.xreplace({M: H_L, v: b}), S_INVERSE),
    ]


def sherman_morrison(M, v):
    """M⁻¹ − (M⁻¹v)(1 + vᵀM⁻¹v)⁻¹(vᵀM⁻¹) for a matrix M and a column v (5.88); the middle factor is the
    1 × 1 matrix PRML writes as the scalar denominator."""
    Mi = M.I
    return Mi - (Mi * v) * (sp.Identity(1) + v.T * Mi * v).I * (v.T * Mi)


def finite_difference_equations():
    """5.90–5.91: the central-difference Hessians whose O(ε²) error makes them the check on all else."""
    wr, ws, eps = sp.symbols("w_r w_s epsilon", real=True)
    E = sp.Function("E")
    g = sp.Function(r"\frac{\partial E}{\partial w_r}")
    return [
        Equation("5.90", "fd_error", "central differences of the error, O(ε²), O(W³) in all",
                 dE(wr, ws), (E(wr + eps, ws + eps) - E(wr + eps, ws - eps) - E(wr - eps, ws + eps)
                              + E(wr - eps, ws - eps)) / (4 * eps ** 2), S_FINITE, definition=True),
        Equation("5.91", "fd_gradient", "central differences of the backpropagated gradient, O(ε²), O(W²)",
                 dE(wr, ws), (g(ws + eps) - g(ws - eps)) / (2 * eps), S_FINITE, definition=True),
    ]
