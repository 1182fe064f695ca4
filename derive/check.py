"""Verification: every kernel of a network against finite differences, as ``derive check`` prints it.

In:  an activation, a loss and layer sizes.
Out: :class:`CheckResult` rows — the relative error of each kernel against an independent evaluation:
     the gradient against central differences of the error (PRML 5.69), the Hessian against central
     differences of the gradient (5.91) and its own transpose, the Hessian-vector product against the
     Hessian times v, the forward pass against a NumPy evaluation of the same network, the input
     Jacobian against central differences of the outputs (5.72), the diagonals against the Hessian's,
     the outer product against finite differences of the gradient where the residuals vanish (T = y),
     its sequential inverse against a dense inverse, and the error-based finite-difference Hessian
     (5.90) against the exact one.
"""
from dataclasses import dataclass

import numpy as np

from .network import MLP

#: The tolerances the checks must meet (relative to the largest entry of the reference).
TOLERANCES = {"forward": 1e-12, "gradient": 1e-6, "hessian": 1e-6, "symmetry": 1e-12, "hvp": 1e-10,
              "jacobian": 1e-6, "diagonal": 1e-10, "outer": 1e-6, "inverse": 1e-6, "finite": 1e-5}


@dataclass(frozen=True)
class CheckResult:
    kernel: str
    reference: str
    error: float
    tolerance: float

    @property
    def passed(self):
        return bool(np.isfinite(self.error) and self.error <= self.tolerance)


def relative_error(value, reference):
    """max |value − reference| / max |reference| (absolute when the reference is all zeros)."""
    scale = np.max(np.abs(reference)) if np.size(reference) else 0.0
    return float(np.max(np.abs(np.asarray(value) - reference)) / (scale if scale > 0 else 1.0))


def random_problem(net, samples=6, seed=0):
    """(w, X, T) for ``net``: weights of a well-scaled random network, inputs ~ N(0, 1), and targets of the
    loss's kind (sse: real; bce: in [0, 1]; ce: positive rows that need not sum to one)."""
    rng = np.random.default_rng(seed)
    w = net.init(seed) + 0.1 * rng.normal(size=net.n_params)
    X = rng.normal(size=(samples, net.sizes[0]))
    K = net.sizes[-1]
    if net.loss.name == "sse":
        T = rng.normal(size=(samples, K))
    elif net.loss.name == "bce":
        T = rng.uniform(size=(samples, K))
    else:
        T = rng.dirichlet(np.ones(K), size=samples) * rng.uniform(0.5, 1.5, size=(samples, 1))
    return w, X, T


def numpy_forward(net, w, X):
    """The network's outputs evaluated with NumPy from the activations' own kernels (z = h(a))."""
    z = X
    layers = net.unflatten(w)
    for l, (W, b) in enumerate(layers):
        a = z @ W.T + b
        if l < len(layers) - 1:
            z = net.kernels[l].evaluate(a)[0]
    if net.loss.output == "identity":
        return a
    if net.loss.output == "logistic":
        return 0.5 * (1 + np.tanh(a / 2))
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def central_differences(f, w, eps):
    """[(f(w + eps e_i) − f(w − eps e_i)) / 2 eps for each unit vector e_i], stacked along axis 0."""
    rows = []
    for i in range(w.size):
        step = np.zeros_like(w)
        step[i] = eps
        rows.append((np.asarray(f(w + step)) - np.asarray(f(w - step))) / (2 * eps))
    return np.array(rows)


def check_network(activation="tanh", loss="sse", sizes=(4, 8, 3), samples=6, seed=0):
    """Run every kernel of ``MLP(sizes, activation, loss)`` against its reference; list of CheckResult."""
    net = MLP(list(sizes), activation=activation, loss=loss)
    w, X, T = random_problem(net, samples, seed)
    gradient = net.gradient(w, X, T)
    hessian = net.hessian(w, X, T)
    v = np.random.default_rng(seed + 1).normal(size=net.n_params)
    results = [
        CheckResult("forward", "NumPy evaluation", relative_error(net.forward(w, X), numpy_forward(net, w, X)),
                    TOLERANCES["forward"]),
        CheckResult("gradient", "central differences of E (5.69)",
                    relative_error(gradient, central_differences(lambda u: net.error(u, X, T), w, 1e-5)),
                    TOLERANCES["gradient"]),
        CheckResult("hessian", "central differences of the gradient (5.91)",
                    relative_error(hessian, central_differences(lambda u: net.gradient(u, X, T), w, 1e-5)),
                    TOLERANCES["hessian"]),
        CheckResult("hessian", "its transpose", relative_error(hessian, hessian.T), TOLERANCES["symmetry"]),
        CheckResult("hvp", "hessian @ v", relative_error(net.hvp(w, X, T, v), hessian @ v), TOLERANCES["hvp"]),
        CheckResult("jacobian", "central differences of y in x (5.72)",
                    relative_error(net.jacobian(w, X), _input_differences(net, w, X, 1e-5)), TOLERANCES["jacobian"]),
        CheckResult("diagonal", "diag(hessian)", relative_error(net.hessian_diagonal(w, X, T), np.diag(hessian)),
                    TOLERANCES["diagonal"]),
    ]
    if net.loss.name in ("sse", "bce") and net.L <= 2:  # Λ diagonal: Becker–LeCun is exact (5.80 = 5.81)
        results.append(CheckResult("becker_lecun", "diag(hessian) (Λ diagonal, L <= 2)",
                                   relative_error(net.hessian_diagonal(w, X, T, method="becker_lecun"),
                                                  np.diag(hessian)), TOLERANCES["diagonal"]))
    Y = net.forward(w, X)  # targets with zero residuals: the Hessian is exactly the outer product
    outer = net.outer_product(w, X, Y)
    results.append(CheckResult("outer", "central diff. of the gradient at T = y",
                               relative_error(outer, central_differences(lambda u: net.gradient(u, X, Y), w, 1e-5)),
                               TOLERANCES["outer"]))
    alpha = 1e-2
    dense = np.linalg.inv(net.outer_product(w, X, T) + alpha * np.eye(net.n_params))
    results.append(CheckResult("inverse", "dense inverse of outer + alpha I (Frobenius)",
                               float(np.linalg.norm(net.inverse_outer_product(w, X, T, alpha) - dense)
                                     / np.linalg.norm(dense)), TOLERANCES["inverse"]))
    results.append(CheckResult("fd_error", "hessian (5.90 with eps = 1e-4)",
                               relative_error(net.finite_difference_hessian(w, X, T, 1e-4, method="error"), hessian),
                               TOLERANCES["finite"]))
    return net, results


def _input_differences(net, w, X, eps):
    """Central differences of the outputs in each input (N, d_L, d_0)."""
    columns = []
    for i in range(X.shape[1]):
        step = np.zeros_like(X)
        step[:, i] = eps
        columns.append((net.forward(w, X + step) - net.forward(w, X - step)) / (2 * eps))
    return np.stack(columns, axis=2)
