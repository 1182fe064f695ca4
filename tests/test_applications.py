"""Stage 8: what PRML uses the second derivatives for — Newton steps, pruning saliencies (OBD, OBS) and
the Laplace approximation (§5.7) — each checked against an independent evaluation: closed forms of the
linear-Gaussian model (where the Laplace approximation is exact), a constrained quadratic solved by its
KKT system, and finite differences of the network's own outputs and gradient."""
import numpy as np
import pytest
from scipy.optimize import minimize

import derive
from derive import applications as ap
from conftest import rel


def data(net, N=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, net.sizes[0]))
    signal = np.sin(X[:, :1] + X[:, -1:]) + 0.1 * rng.normal(size=(N, 1))
    if net.loss.name == "sse":
        T = signal @ np.ones((1, net.sizes[-1])) + 0.1 * rng.normal(size=(N, net.sizes[-1]))
    elif net.loss.name == "bce":
        T = (signal + 0.3 * rng.normal(size=(N, net.sizes[-1])) > 0).astype(float)
    else:
        T = np.eye(net.sizes[-1])[np.digitize(signal[:, 0], [-0.5, 0.5]) % net.sizes[-1]]
    return X, T


def trained(net, X, T, alpha, beta=1.0, seed=1):
    """w_MAP: the minimum of β E_D + α/2 wᵀw, found by L-BFGS on derive's error and gradient."""
    def objective(w):
        E, g = net.error_and_gradient(w, X, T)
        return beta * E + 0.5 * alpha * w @ w, beta * g + alpha * w
    result = minimize(objective, net.init(seed), jac=True, method="L-BFGS-B",
                      options=dict(gtol=1e-11, ftol=1e-15, maxiter=20000))
    # stationary to 1e-5 per unit of beta: the objective's scale (L-BFGS's last steps are at rounding level
    # there, and where they end depends on the BLAS kernels' order of summation)
    assert np.linalg.norm(objective(result.x)[1]) < 1e-5 * max(1.0, beta)
    return result.x


def fd_hessian(net, w, X, T):
    return net.finite_difference_hessian(w, X, T, eps=1e-5)


# --- the linear-Gaussian model: every quantity in closed form (PRML §3.3, §3.5) -----------------

def linear_model(N=30, d=3, K=2, seed=0):
    net = derive.MLP([d, K], loss="sse")
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, d))
    T = X @ rng.normal(size=(d, K)) + 0.3 + 0.2 * rng.normal(size=(N, K))
    Phi = np.hstack([X, np.ones((N, 1))])
    return net, X, T, Phi


def as_w(B, d):
    """derive's layout (W (K×d) row-major, then b) of coefficients B (d+1, K) of Φ = [X, 1]."""
    return np.concatenate([B[:d].T.ravel(), B[d]])


def exact_log_evidence(Phi, T, alpha, beta):
    """ln p(T | α, β) = Σ_k ln N(t_k | 0, β⁻¹I + α⁻¹ΦΦᵀ): the marginal likelihood itself."""
    C = np.eye(len(Phi)) / beta + Phi @ Phi.T / alpha
    _, logdet = np.linalg.slogdet(C)
    return sum(-0.5 * (t @ np.linalg.solve(C, t) + logdet + len(t) * np.log(2 * np.pi)) for t in T.T)


def ridge(Phi, T, alpha, beta):
    return np.linalg.solve(alpha * np.eye(Phi.shape[1]) + beta * Phi.T @ Phi, beta * Phi.T @ T)


def test_newton_step_of_a_linear_network_lands_on_the_least_squares_solution():
    net, X, T, Phi = linear_model()
    w = net.init(3)
    B = np.linalg.lstsq(Phi, T, rcond=None)[0]
    assert rel(w + ap.newton_step(net, w, X, T), as_w(B, X.shape[1])) < 1e-10
    # the outer product is the Hessian here (no residual terms for linear outputs): Gauss–Newton agrees
    assert rel(w + ap.newton_step(net, w, X, T, curvature="outer_product"), as_w(B, X.shape[1])) < 1e-10


def test_levenberg_marquardt_damping_is_ridge_regression_of_the_step():
    net, X, T, Phi = linear_model()
    w = net.init(3)
    step = ap.newton_step(net, w, X, T, curvature="outer_product", damping=2.5)
    # (ΦᵀΦ + λI) Δ = −∇E, per output, in the coefficients' own layout
    residual = Phi @ np.vstack([w[:6].reshape(2, 3).T, w[6:]]) - T
    reference = np.linalg.solve(Phi.T @ Phi + 2.5 * np.eye(4), -(Phi.T @ residual))
    assert rel(step, as_w(reference, 3)) < 1e-12


@pytest.mark.parametrize("alpha, beta", [(0.5, 10.0), (3.0, 1.0)])
def test_laplace_evidence_of_the_linear_gaussian_model_is_the_exact_marginal_likelihood(alpha, beta):
    net, X, T, Phi = linear_model()
    w_map = as_w(ridge(Phi, T, alpha, beta), X.shape[1])
    laplace = ap.laplace(net, w_map, X, T, alpha=alpha, beta=beta)
    assert np.linalg.norm(laplace.gradient) < 1e-9
    assert abs(laplace.log_evidence - exact_log_evidence(Phi, T, alpha, beta)) < 1e-9 * abs(laplace.log_evidence)


def test_predictive_variance_of_the_linear_gaussian_model():
    net, X, T, Phi = linear_model()
    alpha, beta = 0.7, 4.0
    laplace = ap.laplace(net, as_w(ridge(Phi, T, alpha, beta), 3), X, T, alpha=alpha, beta=beta)
    X_new = np.random.default_rng(5).normal(size=(6, 3))
    Phi_new = np.hstack([X_new, np.ones((6, 1))])
    S = np.linalg.inv(alpha * np.eye(4) + beta * Phi.T @ Phi)               # PRML 3.54
    reference = 1 / beta + np.einsum("mi,ij,mj->m", Phi_new, S, Phi_new)     # PRML 3.59
    assert rel(laplace.predictive_variance(X_new), np.repeat(reference[:, None], 2, axis=1)) < 1e-10


def test_reestimation_converges_to_the_maximum_of_the_exact_evidence():
    net, X, T, Phi = linear_model()
    alpha, beta = 1.0, 1.0
    for _ in range(200):
        laplace = ap.laplace(net, as_w(ridge(Phi, T, alpha, beta), 3), X, T, alpha=alpha, beta=beta)
        alpha, beta = laplace.reestimate()
    for index, value in enumerate((alpha, beta)):
        h = 1e-4 * value
        up, down = [alpha, beta], [alpha, beta]
        up[index] += h
        down[index] -= h
        slope = (exact_log_evidence(Phi, T, *up) - exact_log_evidence(Phi, T, *down)) / (2 * h)
        assert abs(slope * value) < 1e-5     # stationary: d ln p / d ln(α or β) = 0


# --- nonlinear networks at a trained minimum ----------------------------------------------------

@pytest.mark.parametrize("loss, sizes", [("sse", [3, 4, 2]), ("bce", [2, 3, 3, 1]), ("ce", [3, 4, 3])])
def test_obd_saliencies_are_half_the_diagonal_times_w_squared(loss, sizes):
    net = derive.MLP(sizes, activation="tanh", loss=loss)
    X, T = data(net)
    w = trained(net, X, T, alpha=0.1)
    reference = 0.5 * np.diag(fd_hessian(net, w, X, T)) * w * w
    assert rel(ap.obd_saliencies(net, w, X, T), reference) < 1e-6
    assert rel(ap.obd_saliencies(net, w, X, T, method="becker_lecun"),
               0.5 * net.hessian_diagonal(w, X, T, method="becker_lecun") * w * w) < 1e-14


@pytest.mark.parametrize("loss, sizes", [("sse", [3, 4, 2]), ("bce", [2, 3, 3, 1]), ("ce", [3, 4, 3])])
def test_obs_is_the_constrained_minimum_of_the_quadratic_model(loss, sizes):
    """OBS's L_q and δw against the KKT system of min ½ δᵀCδ subject to w_q + δ_q = 0."""
    net = derive.MLP(sizes, activation="tanh", loss=loss)
    X, T = data(net)
    alpha = 0.1
    w = trained(net, X, T, alpha=alpha)
    C = fd_hessian(net, w, X, T) + alpha * np.eye(net.n_params)   # the Hessian of E + α/2 wᵀw
    saliencies = ap.obs_saliencies(net, w, X, T, damping=alpha)
    W = net.n_params
    for q in (0, W // 2, W - 1):
        kkt = np.zeros((W + 1, W + 1))
        kkt[:W, :W], kkt[:W, W], kkt[W, :W] = C, np.eye(W)[q], np.eye(W)[q]
        delta = np.linalg.solve(kkt, np.concatenate([np.zeros(W), [-w[q]]]))[:W]
        rise = 0.5 * delta @ C @ delta
        pruned, L_q = ap.obs_prune(net, w, X, T, q, damping=alpha)
        assert pruned[q] == 0.0
        assert rel(pruned - w, delta) < 1e-6
        assert abs(L_q - rise) < 1e-6 * rise and abs(saliencies[q] - rise) < 1e-6 * rise


def test_obs_with_the_outer_product_uses_the_inverse_of_the_sequential_updates():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    X, T = data(net)
    w = trained(net, X, T, alpha=0.1)
    inverse = net.inverse_outer_product(w, X, T, alpha=0.05)     # PRML 5.89, Hassibi and Stork's recursion
    assert rel(ap.obs_saliencies(net, w, X, T, curvature="outer_product", damping=0.05),
               w * w / (2 * np.diag(inverse))) < 1e-9


def test_newton_steps_converge_quadratically_near_a_minimum():
    net = derive.MLP([2, 2, 1], activation="tanh", loss="sse")
    X, T = data(net, N=60)
    w = minimize(lambda w: net.error_and_gradient(w, X, T), net.init(1), jac=True, method="BFGS",
                 options=dict(gtol=1e-6)).x    # near a minimum of E itself, where H is positive definite
    assert 1e-8 < np.linalg.norm(net.gradient(w, X, T)) < 1e-5
    step = ap.newton_step(net, w, X, T)
    assert rel(step, -np.linalg.solve(fd_hessian(net, w, X, T), net.gradient(w, X, T))) < 1e-5
    w = w + step
    assert np.linalg.norm(net.gradient(w, X, T)) < 1e-11


def test_newton_steps_with_weight_decay_converge_to_the_map_parameters():
    net = derive.MLP([2, 3, 2], activation="tanh", loss="sse")
    X, T = data(net)
    alpha = 0.05
    w = trained(net, X, T, alpha=alpha)          # L-BFGS to |∇| < 1e-5
    for _ in range(2):
        w = w + ap.newton_step(net, w, X, T, weight_decay=alpha)
    assert np.linalg.norm(net.gradient(w, X, T) + alpha * w) < 1e-12
    assert np.linalg.norm(ap.laplace(net, w, X, T, alpha=alpha).gradient) < 1e-12


def linear_twin_fd_gradients(net, w, X, eps=1e-6):
    """∂a_k/∂w by central differences of the output activations (the forward pass of the same layers
    with linear outputs), (M, K, W)."""
    twin = derive.MLP(net.sizes, activation="tanh", loss="sse")
    columns = [(twin.forward(w + eps * e, X) - twin.forward(w - eps * e, X)) / (2 * eps) for e in np.eye(len(w))]
    return np.stack(columns, axis=2), twin.forward(w, X)


@pytest.mark.parametrize("loss, sizes", [("sse", [2, 3, 2]), ("bce", [3, 2, 2, 1]), ("ce", [2, 4, 3])])
def test_output_gradients_match_central_differences_of_the_output_activations(loss, sizes):
    net = derive.MLP(sizes, activation="tanh", loss=loss)
    w = net.init(2)
    X = np.random.default_rng(6).normal(size=(4, sizes[0]))
    G, _ = linear_twin_fd_gradients(net, w, X)
    assert rel(ap.output_gradients(net, w, X), G) < 1e-8
    # ∂a/∂w does not depend on the output biases: huge ones (a ≈ 1e17, where a − 1 == a, and a ≈ 1e200,
    # where ½ a² overflows) change nothing
    for bias in (1e17, 1e200):
        shifted = w.copy()
        shifted[-sizes[-1]:] += bias
        assert rel(ap.output_gradients(net, shifted, X), ap.output_gradients(net, w, X)) < 1e-14


def test_laplace_of_a_tanh_regression_network():
    net = derive.MLP([2, 4, 2], activation="tanh", loss="sse")
    X, T = data(net)
    alpha, beta = 0.2, 20.0
    w = trained(net, X, T, alpha=alpha, beta=beta)
    laplace = ap.laplace(net, w, X, T, alpha=alpha, beta=beta)
    A = alpha * np.eye(net.n_params) + beta * fd_hessian(net, w, X, T)
    E = beta * net.error(w, X, T) + 0.5 * alpha * w @ w
    reference = (-E - 0.5 * np.linalg.slogdet(A)[1] + 0.5 * net.n_params * np.log(alpha)
                 + 0.5 * T.size * (np.log(beta) - np.log(2 * np.pi)))                        # PRML 5.175
    assert abs(laplace.log_evidence - reference) < 1e-6 * abs(reference)
    X_new = np.random.default_rng(3).normal(size=(5, 2))
    G, _ = linear_twin_fd_gradients(net, w, X_new)
    variance = 1 / beta + np.einsum("mkw,wv,mkv->mk", G, np.linalg.inv(A), G)                  # PRML 5.173
    assert rel(laplace.predictive_variance(X_new), variance) < 1e-6


def test_laplace_of_a_binary_classifier():
    net = derive.MLP([2, 3, 1], activation="tanh", loss="bce")
    X, T = data(net)
    alpha = 0.5
    w = trained(net, X, T, alpha=alpha)
    laplace = ap.laplace(net, w, X, T, alpha=alpha)
    A = alpha * np.eye(net.n_params) + fd_hessian(net, w, X, T)
    E = net.error(w, X, T) + 0.5 * alpha * w @ w
    reference = -E - 0.5 * np.linalg.slogdet(A)[1] + 0.5 * net.n_params * np.log(alpha)
    assert abs(laplace.log_evidence - reference) < 1e-6 * abs(reference)
    X_new = np.random.default_rng(4).normal(size=(7, 2)) * 2
    G, a = linear_twin_fd_gradients(net, w, X_new)
    s2 = np.einsum("mkw,wv,mkv->mk", G, np.linalg.inv(A), G)                                  # 5.187
    reference = 1 / (1 + np.exp(-a / np.sqrt(1 + np.pi * s2 / 8)))                             # 5.190, 4.154
    assert rel(laplace.predictive_probability(X_new), reference) < 1e-6
    alpha_new, beta_new = laplace.reestimate()
    assert beta_new is None and 0 < alpha_new < np.inf


def test_laplace_output_variance_of_a_softmax_network():
    net = derive.MLP([3, 4, 3], activation="tanh", loss="ce")
    X, T = data(net)
    w = trained(net, X, T, alpha=0.3)
    laplace = ap.laplace(net, w, X, T, alpha=0.3)
    G, _ = linear_twin_fd_gradients(net, w, X[:4])
    A = 0.3 * np.eye(net.n_params) + fd_hessian(net, w, X, T)
    assert rel(laplace.output_variance(X[:4]), np.einsum("mkw,wv,mkv->mk", G, np.linalg.inv(A), G)) < 1e-6
    assert rel(laplace.covariance, np.linalg.inv(A)) < 1e-5


# --- refusals -----------------------------------------------------------------------------------

def test_an_indefinite_curvature_is_refused_with_its_smallest_eigenvalue():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    X, T = data(net)
    w = net.init(3)
    H = net.hessian(w, X, T)
    lowest = np.linalg.eigvalsh(H)[0]
    assert lowest < 0
    with pytest.raises(derive.DeriveError, match=r"not positive definite \(smallest eigenvalue %s" % ("%.6g" % lowest)):
        ap.newton_step(net, w, X, T)
    with pytest.raises(derive.DeriveError, match="not positive definite.*regularised error"):
        ap.laplace(net, w, X, T, alpha=1e-3)
    ap.newton_step(net, w, X, T, damping=-lowest + 1.0)      # damping past it: a step


def test_a_softmax_curvature_without_damping_is_refused_as_singular_by_construction():
    net = derive.MLP([3, 4, 3], activation="tanh", loss="ce")
    X, T = data(net)
    w = trained(net, X, T, alpha=0.3)
    with pytest.raises(derive.DeriveError, match="softmax.*always singular.*damping"):
        ap.newton_step(net, w, X, T, curvature="outer_product")
    ap.newton_step(net, w, X, T, curvature="outer_product", damping=1e-3)


def test_laplace_keeps_its_own_copy_of_w():
    net = derive.MLP([2, 3, 2], activation="tanh", loss="sse")
    X, T = data(net)
    w = trained(net, X, T, alpha=0.2)
    laplace = ap.laplace(net, w, X, T, alpha=0.2)
    before = laplace.predictive_variance(X[:3])
    w += 0.5
    assert np.array_equal(laplace.predictive_variance(X[:3]), before)


def test_a_numerically_singular_matrix_is_refused():
    with pytest.raises(derive.DeriveError, match="singular|not positive definite"):
        ap.Cholesky(np.array([[1.0, 1.0], [1.0, 1.0 + 1e-15]]), "A")
    assert abs(ap.Cholesky(np.diag([2.0, 8.0]), "A").log_determinant() - np.log(16.0)) < 1e-15


def test_bad_arguments_are_refused():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    X, T = data(net)
    w = trained(net, X, T, alpha=0.1)
    with pytest.raises(ValueError, match="curvature"):
        ap.newton_step(net, w, X, T, curvature="gauss")
    with pytest.raises(ValueError, match="damping"):
        ap.newton_step(net, w, X, T, damping=-1.0)
    with pytest.raises(TypeError, match="damping"):
        ap.newton_step(net, w, X, T, damping=True)
    with pytest.raises(ValueError, match="parameter index"):
        ap.obs_prune(net, w, X, T, net.n_params, damping=0.1)
    with pytest.raises(TypeError, match="integer index"):
        ap.obs_prune(net, w, X, T, 1.0, damping=0.1)
    with pytest.raises(ValueError, match="alpha"):
        ap.laplace(net, w, X, T, alpha=0.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ap.output_gradients(net, np.full(net.n_params, np.inf), X[:2])
    laplace = ap.laplace(net, w, X, T, alpha=0.1)
    with pytest.raises(ValueError, match="bce"):
        laplace.predictive_probability(X)
    classifier = derive.MLP([3, 4, 1], activation="tanh", loss="bce")
    Xc, Tc = data(classifier)
    with pytest.raises(ValueError, match="beta"):
        ap.laplace(classifier, trained(classifier, Xc, Tc, alpha=0.5), Xc, Tc, alpha=0.5, beta=2.0)
    with pytest.raises(ValueError, match="regression"):
        ap.laplace(classifier, trained(classifier, Xc, Tc, alpha=0.5), Xc, Tc, alpha=0.5).predictive_variance(Xc)
