"""The rest of PRML §5.3.4–§5.4 as compiled kernels: input Jacobian, exact and Becker–LeCun diagonals,
outer product, its inverse by sequential rank-one updates, and finite-difference Hessians — each
checked against an independent evaluation."""
import numpy as np
import pytest

import derive
from conftest import random_problem, rel

SIZES = {1: [3, 2], 2: [3, 4, 2], 3: [2, 3, 4, 3]}
ALL = [(a, l, d) for a in sorted(derive.ACTIVATIONS) for l in sorted(derive.LOSSES) for d in sorted(SIZES)]


@pytest.mark.parametrize("activation, loss, depth", ALL)
def test_input_jacobian_matches_central_differences_of_forward(activation, loss, depth):
    net = derive.MLP(SIZES[depth], activation=activation, loss=loss)
    w, X, _ = random_problem(net)
    eps = 1e-5
    reference = np.stack([(net.forward(w, X + eps * e) - net.forward(w, X - eps * e)) / (2 * eps)
                          for e in np.eye(X.shape[1])], axis=2)
    J = net.jacobian(w, X)
    assert J.shape == (X.shape[0], net.sizes[-1], net.sizes[0])
    assert rel(J, reference) <= 1e-6


@pytest.mark.parametrize("activation, loss, depth", ALL)
def test_diagonals(activation, loss, depth):
    net = derive.MLP(SIZES[depth], activation=activation, loss=loss)
    w, X, T = random_problem(net)
    exact_diagonal = np.diag(net.hessian(w, X, T))
    assert rel(net.hessian_diagonal(w, X, T, method="exact"), exact_diagonal) <= 1e-10
    becker_lecun = net.hessian_diagonal(w, X, T, method="becker_lecun")
    if loss in ("sse", "bce") and depth <= 2:  # Λ is diagonal: dropping k ≠ k' in 5.80 drops nothing
        assert rel(becker_lecun, exact_diagonal) <= 1e-10


@pytest.mark.parametrize("loss, depth", [("sse", 3), ("bce", 3), ("ce", 2), ("ce", 3)])
def test_becker_lecun_differs_where_off_diagonal_terms_matter(loss, depth):
    net = derive.MLP(SIZES[depth], activation="tanh", loss=loss)
    w, X, T = random_problem(net)
    exact = net.hessian_diagonal(w, X, T)
    approximate = net.hessian_diagonal(w, X, T, method="becker_lecun")
    assert rel(approximate, exact) > 1e-3
    # ... but the last layer's block is exact whenever Λ is diagonal
    if loss != "ce":
        last = slice(net.n_params - net.sizes[-1] * (net.sizes[-2] + 1), None)
        assert rel(approximate[last], exact[last]) <= 1e-12


@pytest.mark.parametrize("activation, loss, depth", ALL)
def test_outer_product_is_symmetric_psd_and_the_hessian_without_residuals(activation, loss, depth):
    net = derive.MLP(SIZES[depth], activation=activation, loss=loss)
    w, X, T = random_problem(net)
    G = net.outer_product(w, X, T)
    assert np.array_equal(G, G.T)
    assert np.linalg.eigvalsh(G).min() >= -1e-12 * max(1.0, np.abs(G).max())
    Y = net.forward(w, X)  # the residual term of 5.83 vanishes when the targets are the outputs
    assert rel(net.outer_product(w, X, Y), net.hessian(w, X, Y)) <= 1e-9


@pytest.mark.parametrize("sizes", [[3, 1], [3, 4, 1], [2, 3, 4, 1]])
@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
def test_diagonals_of_a_network_with_one_output(loss, sizes):
    net = derive.MLP(sizes, activation="tanh", loss=loss)
    w, X, T = random_problem(net)
    exact = net.hessian_diagonal(w, X, T)
    assert rel(exact, np.diag(net.hessian(w, X, T))) <= 1e-10
    becker_lecun = net.hessian_diagonal(w, X, T, method="becker_lecun")
    if len(sizes) <= 3:   # a 1 x 1 Lambda is diagonal: with one hidden layer at most, 5.81 drops nothing
        assert rel(becker_lecun, exact) <= 1e-10


def parameter_jacobian(net, w, X, eps=1e-6):
    """J[n, k, r] = da(L)_k/dw_r by central differences: the same network with the identity output of
    sse gives y = a(L)."""
    linear = derive.MLP(list(net.sizes), activation=[a.name for a in net.activations], loss="sse")
    J = np.empty((X.shape[0], net.sizes[-1], net.n_params))
    for r, e in enumerate(np.eye(net.n_params) * eps):
        J[:, :, r] = (linear.forward(w + e, X) - linear.forward(w - e, X)) / (2 * eps)
    return J


def output_lambda(loss, y, t):
    """Lambda_n = d2E_n/da da^T of each sample, from the outputs y (N, K) by its textbook formula."""
    if loss == "sse":
        return np.broadcast_to(np.eye(y.shape[1]), (y.shape[0],) + (y.shape[1],) * 2)
    if loss == "bce":
        return np.array([np.diag(yn * (1 - yn)) for yn in y])
    return np.array([tn.sum() * (np.diag(yn) - np.outer(yn, yn)) for yn, tn in zip(y, t)])


@pytest.mark.parametrize("sizes", [[3, 4, 2], [2, 5, 3, 3], [3, 4, 1, 4, 2]])
@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
def test_outer_product_is_the_sum_of_jt_lambda_j_with_j_by_central_differences(loss, sizes):
    # G is assembled from the Hessian's layer blocks without the terms in delta(L); the reference builds
    # sum_n J_n^T Lambda_n J_n from the parameter Jacobian by central differences of a(L)
    net = derive.MLP(sizes, activation=["sigmoid", "sin", "softplus"][:len(sizes) - 2], loss=loss)
    w, X, T = random_problem(net, samples=7)
    J = parameter_jacobian(net, w, X)
    reference = sum(J[n].T @ lam @ J[n] for n, lam in enumerate(output_lambda(loss, net.forward(w, X), T)))
    assert rel(net.outer_product(w, X, T), reference) <= 1e-8


def test_outer_product_with_an_indefinite_lambda_is_still_the_sum_of_jt_lambda_j():
    # ce targets whose rows sum to less than 0 make Lambda_n = (sum_k t_k)(diag y - y y^T) negative
    # semi-definite; G = sum_n J_n^T Lambda_n J_n keeps those terms (none is clipped away)
    net = derive.MLP([3, 4, 3], activation="tanh", loss="ce")
    w, X, T = random_problem(net, samples=6)
    T[[1, 4]] *= -0.3
    J = parameter_jacobian(net, w, X)
    reference = sum(J[n].T @ lam @ J[n] for n, lam in enumerate(output_lambda("ce", net.forward(w, X), T)))
    G = net.outer_product(w, X, T)
    lowest = np.linalg.eigvalsh(G).min()
    assert lowest < -1e-3          # indefinite, as the reference
    assert rel(G, reference) <= 1e-8
    for alpha in (1.0 - lowest, 0.5):        # G + alpha I positive definite, and indefinite
        dense = np.linalg.inv(G + alpha * np.eye(net.n_params))
        assert rel(net.inverse_outer_product(w, X, T, alpha), dense) <= 1e-8


def test_inverse_outer_product_refuses_a_singular_matrix():
    # one sample, Lambda = -(diag y - y y^T) of rank one: G = -f f^T, and G + |f|^2 I is singular
    net = derive.MLP([1, 2], activation="tanh", loss="ce")
    w, X, T = np.array([0.0, 0.0, 1.0, 0.0]), np.array([[0.0]]), np.array([[-1.0, 0.0]])
    alpha = -np.linalg.eigvalsh(net.outer_product(w, X, T)).min()
    with pytest.raises(ValueError, match="singular"):
        net.inverse_outer_product(w, X, T, alpha)
    assert np.isfinite(net.inverse_outer_product(w, X, T, 2 * alpha)).all()


def test_inverse_outer_product_refuses_a_nearly_singular_partial_sum():
    # the helper's case: the final matrix has condition number 2, but after the first sample's downdate the
    # partial sum is within delta of singular, and the second sample's update then loses ~1e-16 / delta
    net = derive.MLP([1, 2], loss="ce")
    w, X, T = np.zeros(4), np.ones((2, 1)), np.array([[-0.5, -0.5], [1.0, 1.0]])
    for delta, refused in ((1e-3, False), (1e-8, True), (1e-10, True)):
        alpha = 1.0 + delta
        if refused:
            with pytest.raises(ValueError, match="singular or nearly so"):
                net.inverse_outer_product(w, X, T, alpha)
        else:
            dense = np.linalg.inv(net.outer_product(w, X, T) + alpha * np.eye(4))
            assert rel(net.inverse_outer_product(w, X, T, alpha), dense) <= 1e-11


def test_inverse_outer_product_refuses_an_update_that_overflows():
    # exp(700)^2 overflows in c^T H^-1 c: the update used to be skipped (1/inf = 0), returning I / alpha
    net = derive.MLP([1, 2, 1], activation="exp(a)", loss="sse")
    w, X, T = np.array([1.0, 1.0, 700.0, 700.0, 1e-300, 1e-300, 0.0]), np.zeros((1, 1)), np.zeros((1, 1))
    with pytest.raises(ValueError, match="overflow"):
        net.outer_product(w, X, T)
    with pytest.raises(ValueError, match="overflow"):
        net.inverse_outer_product(w, X, T, 1.0)


@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
def test_inverse_outer_product_by_rank_one_updates_matches_a_dense_inverse(loss):
    net = derive.MLP([4, 10, 3], activation="tanh", loss=loss)
    w, X, T = random_problem(net, samples=2000)
    alpha = 1e-2
    dense = np.linalg.inv(net.outer_product(w, X, T) + alpha * np.eye(net.n_params))
    sequential = net.inverse_outer_product(w, X, T, alpha)
    assert np.linalg.norm(sequential - dense) / np.linalg.norm(dense) <= 1e-6
    assert np.array_equal(sequential, sequential.T)


@pytest.mark.parametrize("method", ["gradient", "error"])
@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
def test_finite_difference_hessians_converge_like_eps_squared(method, loss):
    net = derive.MLP([3, 4, 2], activation="tanh", loss=loss)
    w, X, T = random_problem(net)
    H = net.hessian(w, X, T)
    errors = [np.abs(net.finite_difference_hessian(w, X, T, eps, method=method) - H).max() for eps in (4e-2, 2e-2)]
    assert 3.0 < errors[0] / errors[1] < 5.0  # halving eps divides the error by 4: O(eps²)
    assert rel(net.finite_difference_hessian(w, X, T, 1e-4, method=method), H) <= 1e-5


def test_bad_method_and_parameter_values_are_refused():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    w, X, T = random_problem(net)
    with pytest.raises(ValueError, match="method"):
        net.hessian_diagonal(w, X, T, method="approximate")
    with pytest.raises(ValueError, match="method"):
        net.finite_difference_hessian(w, X, T, method="forward")
    with pytest.raises(ValueError, match="alpha"):
        net.inverse_outer_product(w, X, T, alpha=0.0)
    with pytest.raises(ValueError, match="eps"):
        net.finite_difference_hessian(w, X, T, eps=-1.0)
    with pytest.raises(ValueError, match="spacing of float64"):     # w + eps == w: every difference 0
        net.finite_difference_hessian(w, X, T, eps=1e-300)
    with pytest.raises(ValueError, match="w contains NaN or infinite"):   # not "eps below the spacing at inf"
        net.finite_difference_hessian(np.where(np.arange(w.size) == 3, np.inf, w), X, T)
    with pytest.raises(ValueError, match="too small"):               # I / alpha overflows
        net.inverse_outer_product(w, X, T, alpha=1e-320)
    for not_a_number in ("1", True):
        with pytest.raises(TypeError, match="alpha"):
            net.inverse_outer_product(w, X, T, alpha=not_a_number)
    with pytest.raises(ValueError, match="X"):
        net.jacobian(w, X[:, :2])
