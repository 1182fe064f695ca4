"""Stage 8 — what PRML uses second derivatives for (§5.4's introduction, §5.7), on top of :class:`MLP`.

In:  an :class:`~derive.MLP`, parameters w (at or near a minimum, where the method assumes one), the
     training inputs X (N, d_0) and targets T (N, d_L).
Out: a Newton step (exact Hessian, or the outer-product matrix: Gauss–Newton / Levenberg–Marquardt);
     pruning saliencies — Optimal Brain Damage (LeCun et al. 1990) from the diagonal, Optimal Brain
     Surgeon (Hassibi and Stork 1993) from the inverse — and OBS's weight update; the Laplace
     approximation of the posterior (§5.7): its precision A, the log evidence, the predictive variance
     (sse) or class probability (bce), and the re-estimated hyperparameters α, β; on the way, the
     gradients ∂a⁽ᴸ⁾/∂w of the output activations at new inputs.

Every matrix is factorised by Cholesky: these methods assume a minimum, where the curvature matrix is
positive definite. Where it is not, or is too close to singular for its solution to keep any digits,
they raise :class:`~derive.DeriveError` saying so (with the smallest eigenvalue), never return a step or
an evidence computed from an indefinite matrix. Costs are those of the W × W matrices: O(N W²) to form
(see :meth:`MLP.hessian`), O(W³) to factorise.
"""
import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from .errors import DeriveError
from .network import _nonnegative, _positive

CURVATURES = ("hessian", "outer_product")


# --- shared: curvature matrices and their factorisation ----------------------------------------

def curvature_matrix(net, w, X, T, curvature="hessian", damping=0.0):
    """C + damping·I, (W, W): C the exact Hessian (``"hessian"``) or the outer-product matrix
    G = Σ_n J_nᵀ Λ_n J_n (``"outer_product"``, PRML 5.84–5.85)."""
    if curvature not in CURVATURES:
        raise ValueError("curvature must be one of %s, got %r" % (", ".join(map(repr, CURVATURES)), curvature))
    damping = _nonnegative(damping, "damping")
    C = net.hessian(w, X, T) if curvature == "hessian" else net.outer_product(w, X, T)
    C[np.diag_indices_from(C)] += damping
    return C


class Cholesky:
    """The Cholesky factor of a symmetric positive definite matrix A (W, W), refused with DeriveError
    where A is not positive definite or so ill-conditioned (reciprocal condition number below W·ε)
    that solves with it would keep no correct digit. ``what`` names A in the error, ``advice`` says
    what to do instead."""

    def __init__(self, A, what, advice=""):
        self.size = A.shape[0]
        try:
            self._factor = linalg.cho_factor(A, lower=True, check_finite=False)
        except linalg.LinAlgError:
            raise DeriveError("%s is not positive definite (smallest eigenvalue %.6g)%s"
                              % (what, _smallest_eigenvalue(A), advice and ": " + advice)) from None
        factor = self._factor[0]
        rcond, info = lapack.dpocon(factor, np.linalg.norm(A, 1), uplo="L")
        if info != 0 or not rcond > self.size * np.finfo(float).eps:
            raise DeriveError("%s is numerically singular (reciprocal condition number %.3g, smallest "
                              "eigenvalue %.6g)%s" % (what, rcond, _smallest_eigenvalue(A), advice and ": " + advice))

    def solve(self, b):
        """A⁻¹ b for b of shape (W,) or (W, m)."""
        return linalg.cho_solve(self._factor, b, check_finite=False)

    def inverse(self):
        """A⁻¹, (W, W), symmetric."""
        inverse = self.solve(np.eye(self.size))
        return (inverse + inverse.T) / 2

    def log_determinant(self):
        """ln |A| = 2 Σ ln L_ii."""
        return 2.0 * float(np.sum(np.log(np.diag(self._factor[0]))))


def _curvature_cholesky(net, C, curvature, shift, shift_name):
    """The Cholesky factor of C = (curvature) + shift·I, with the advice that fits where it fails."""
    if net.loss.name == "ce" and shift == 0.0:
        advice = ("E of a softmax does not change when every output unit's bias (or incoming weight row) "
                  "shifts by the same amount, so its Hessian and outer product are always singular; use "
                  "%s > 0" % shift_name)
    else:
        advice = ("w is not at (or near) a minimum of the error, where this method applies; add damping, "
                  "use curvature='outer_product', or train further")
    return Cholesky(C, "the curvature matrix (%s + %s·I)" % (curvature, shift_name), advice)


def _smallest_eigenvalue(A):
    return float(linalg.eigvalsh(A, subset_by_index=[0, 0], check_finite=False)[0])


# --- second-order training ---------------------------------------------------------------------

def newton_step(net, w, X, T, curvature="hessian", damping=0.0, weight_decay=0.0):
    """Δw = −(C + (weight_decay + damping)·I)⁻¹ (∇E + weight_decay·w), (W,): the step to the minimum of
    the quadratic model at w of E, or with ``weight_decay`` = α of the regularised E + (α/2) wᵀw (PRML
    5.112), whose minimum is w_MAP of :class:`Laplace` (for sse with β = 1).

    ``curvature="hessian"``: Newton's method with the exact Hessian; ``"outer_product"``: Gauss–Newton
    (PRML 5.84–5.85), Levenberg–Marquardt with ``damping`` > 0. Raises DeriveError where the matrix is not
    positive definite (the model has no minimum: w is not in a minimum's basin)."""
    weight_decay = _nonnegative(weight_decay, "weight_decay")
    shift = _nonnegative(damping, "damping") + weight_decay
    C = curvature_matrix(net, w, X, T, curvature, shift)
    g = net.gradient(w, X, T) + weight_decay * net._params(w)
    return -_curvature_cholesky(net, C, curvature, shift, "(weight_decay + damping)").solve(g)


# --- pruning -----------------------------------------------------------------------------------

def obd_saliencies(net, w, X, T, method="exact"):
    """Optimal Brain Damage (LeCun, Denker and Solla 1990): s_i = ½ H_ii w_i², (W,), the rise of E's
    quadratic model when w_i alone is set to 0, off-diagonal terms of H dropped and ∇E = 0 assumed.
    ``method`` chooses the diagonal: ``"exact"`` (5.79 with the exact M recursion) or
    ``"becker_lecun"`` (5.81, the one OBD used); see :meth:`MLP.hessian_diagonal`."""
    w = net._params(w)
    return 0.5 * net.hessian_diagonal(w, X, T, method=method) * w * w


def obs_saliencies(net, w, X, T, curvature="hessian", damping=0.0):
    """Optimal Brain Surgeon (Hassibi and Stork 1993): L_q = w_q² / (2 [C⁻¹]_qq), (W,), the smallest
    rise of E's quadratic model (∇E = 0 assumed) over all changes of w that set w_q to 0, with
    C = H + damping·I or the outer-product matrix (OBS's own choice, with damping = its α). See
    :func:`obs_prune` for the change itself."""
    w = net._params(w)
    inverse = _curvature_factor(net, w, X, T, curvature, damping).inverse()
    return w * w / (2.0 * np.diag(inverse))


def obs_prune(net, w, X, T, q, curvature="hessian", damping=0.0):
    """(w', L_q): Optimal Brain Surgeon's removal of weight q. w' = w + δw with
    δw = −(w_q / [C⁻¹]_qq) C⁻¹ e_q, which sets w'_q = 0 exactly and moves the other weights to keep E's
    quadratic model as low as it can; L_q is the rise it predicts (see :func:`obs_saliencies`)."""
    w = net._params(w)
    q = _index(q, net.n_params)
    column = _curvature_factor(net, w, X, T, curvature, damping).solve(np.eye(net.n_params)[q])   # C⁻¹ e_q
    pruned = w - (w[q] / column[q]) * column
    pruned[q] = 0.0     # exact, not w_q − w_q·1 rounded
    return pruned, float(w[q] * w[q] / (2.0 * column[q]))


def _curvature_factor(net, w, X, T, curvature, damping):
    damping = _nonnegative(damping, "damping")
    C = curvature_matrix(net, w, X, T, curvature, damping)
    return _curvature_cholesky(net, C, curvature, damping, "damping")


def _index(q, n):
    if isinstance(q, (bool, np.bool_)) or not isinstance(q, (int, np.integer)):
        raise TypeError("q must be the integer index of a parameter, got %r" % (q,))
    if not 0 <= q < n:
        raise ValueError("q = %d is not a parameter index (0 <= q < %d)" % (q, n))
    return int(q)


# --- output gradients -------------------------------------------------------------------------

def output_gradients(net, w, X):
    """∂a_k/∂w, (M, d_L, W): the gradient of each output unit's activation a_k⁽ᴸ⁾ (for sse the output
    y_k itself) at every row of X, by one batched backpropagation (5.74) of ∂a⁽ᴸ⁾/∂a⁽ᴸ⁾ = I through the
    layers and 5.53 for each weight. O(M d_L W) time and memory."""
    return _activations_and_gradients(net, w, X)[1]


def _activations_and_gradients(net, w, X):
    """(a⁽ᴸ⁾ (M, d_L), ∂a⁽ᴸ⁾/∂w (M, d_L, W)) from one forward and one batched backward pass; a⁽ᴸ⁾ is not
    checked for overflow (see MLP._finite)."""
    w, X = net._params(w), net._inputs(X)
    return net._plan.output_parameter_jacobian(w, X)


# --- the Laplace approximation (§5.7) ----------------------------------------------------------

class Laplace:
    """The Laplace approximation q(w|D) = N(w | w_MAP, A⁻¹) of the posterior of ``net``'s parameters
    under the prior p(w|α) = N(0, α⁻¹I) (PRML §5.7), built at ``w`` (which should be w_MAP, the
    minimum of the regularised error E(w) below; see ``gradient``).

    Regression (loss ``sse``, §5.7.1–5.7.2): the targets are Gaussian with precision ``beta`` about the
    outputs, E(w) = β E_D(w) + (α/2) wᵀw with E_D = ½ Σ_n ‖y_n − t_n‖², and A = αI + βH (5.166).
    Classification (``bce``, ``ce``, §5.7.3): E(w) = E_D(w) + (α/2) wᵀw with E_D the cross-entropy, and
    A = αI + H; ``beta`` does not apply there and must be left out.
    H is the exact Hessian of E_D. Raises DeriveError where A is not positive definite.

    Attributes: ``precision`` A (W, W); ``regularised_error`` E(w); ``gradient`` ∇E(w) (W,), zero at
    w_MAP; ``log_evidence`` ln p(D | α, β) (5.175; for K outputs the N terms count N·K targets) or
    ln p(D | α) (§5.7.3: the same without the β terms); ``alpha``, ``beta``, ``w``.
    """

    def __init__(self, net, w, X, T, alpha, beta=None):
        regression = net.loss.name == "sse"
        if not regression and beta is not None:
            raise ValueError("beta (the precision of Gaussian targets) applies to the 'sse' loss only; "
                             "this network's loss is %r" % net.loss.name)
        self.net = net
        w, X, T = net._problem(w, X, T)
        self.w = w.copy()      # the caller's array may change later; every result here is of this w
        self.alpha = _positive(alpha, "alpha")
        self.beta = _positive(1.0 if beta is None else beta, "beta") if regression else None
        scale = self.beta if regression else 1.0
        self.precision = net.hessian(self.w, X, T)
        self.precision *= scale
        self.precision[np.diag_indices_from(self.precision)] += self.alpha
        self._cholesky = Cholesky(self.precision, "the posterior precision A = αI + %sH" % ("β" if regression else ""),
                                  "w is not at (or near) a minimum of the regularised error E(w), where the "
                                  "Laplace approximation applies; train w to w_MAP first")
        data_error, data_gradient = net.error_and_gradient(self.w, X, T)
        self.regularised_error = scale * data_error + 0.5 * self.alpha * float(self.w @ self.w)
        self.gradient = scale * data_gradient + self.alpha * self.w
        self._residual_sum = 2.0 * data_error if regression else None     # Σ_n ‖y_n − t_n‖²
        self._targets = T.size
        W = net.n_params
        self.log_evidence = (-self.regularised_error - 0.5 * self._cholesky.log_determinant()
                             + 0.5 * W * np.log(self.alpha))
        if regression:
            self.log_evidence += 0.5 * self._targets * (np.log(self.beta) - np.log(2.0 * np.pi))
        self._covariance = None

    @property
    def covariance(self):
        """A⁻¹, (W, W): the covariance of q(w|D)."""
        if self._covariance is None:
            self._covariance = self._cholesky.inverse()
        return self._covariance

    def output_variance(self, X):
        """σ_k²(x) = g_kᵀ A⁻¹ g_k, (M, d_L), with g_k = ∇_w a_k(x) the gradient of output unit k's
        activation at w: the variance of a_k under q(w|D) with the network linearised in w (5.173 without
        the noise term; 5.188's σ_a² for bce). One batched backpropagation (output_gradients), then
        O(M d_L W²) for the solves with A."""
        return self._variance(output_gradients(self.net, self.w, X))

    def _variance(self, G):
        """g_kᵀ A⁻¹ g_k (M, K) for the gradients G (M, K, W)."""
        M, K, W = G.shape
        solved = self._cholesky.solve(G.reshape(M * K, W).T).T.reshape(M, K, W)
        return np.einsum("mkw,mkw->mk", G, solved)

    def predictive_variance(self, X):
        """Regression (sse): the variance of the predictive distribution p(t_k | x, D) (5.172–5.173),
        σ²(x) = β⁻¹ + g_kᵀ A⁻¹ g_k, (M, d_L), about the mean y(x, w_MAP) (:meth:`MLP.forward`)."""
        if self.beta is None:
            raise ValueError("predictive_variance is the regression (sse) form; for 'bce' use "
                             "predictive_probability, for the variance of the output activations "
                             "output_variance")
        return 1.0 / self.beta + self.output_variance(X)

    def predictive_probability(self, X):
        """Binary classification (bce): p(t_k = 1 | x, D) ≈ σ(κ(σ_a²) a_MAP) (5.190), (M, d_L), with
        κ(σ²) = (1 + πσ²/8)^(−1/2) (4.154) and σ_a² = bᵀA⁻¹b (5.188), b = ∇_w a_k(x)."""
        if self.net.loss.name != "bce":
            raise ValueError("predictive_probability is the binary-classification (bce) form of §5.7.3; "
                             "this network's loss is %r" % self.net.loss.name)
        a, G = _activations_and_gradients(self.net, self.w, X)   # a_MAP(x), not logit(y): y may round to 1
        a = self.net._finite(a, "w and X")
        kappa = 1.0 / np.sqrt(1.0 + np.pi * self._variance(G) / 8.0)
        return _sigmoid(kappa * a)

    def reestimate(self):
        """Evidence re-estimation of the hyperparameters (5.177–5.180): γ = Σ_i λ_i / (α + λ_i) over the
        eigenvalues λ_i of βH (H for classification), α' = γ / (w_MAPᵀ w_MAP) and, for regression,
        1/β' = Σ_n ‖y_n − t_n‖² / (N·d_L − γ). Returns (α', β') (β' None for classification). To be
        alternated with re-training w_MAP under the new values. O(W³)."""
        eigenvalues = linalg.eigvalsh(self.precision, check_finite=False) - self.alpha
        gamma = float(np.sum(eigenvalues / (self.alpha + eigenvalues)))
        squared_norm = float(self.w @ self.w)
        if squared_norm == 0.0:
            raise ValueError("alpha' = gamma / (w^T w) is undefined at w = 0")
        if self.beta is None:
            return gamma / squared_norm, None
        if self._residual_sum == 0.0:
            raise ValueError("every residual y - t is 0: beta' = (N d_L - gamma) / 0 is unbounded")
        if not self._targets > gamma:
            raise ValueError("1/beta' = sum of squared residuals / (N d_L - gamma) needs more targets (%d) than "
                             "well-determined parameters (gamma = %.6g)" % (self._targets, gamma))
        return gamma / squared_norm, (self._targets - gamma) / self._residual_sum


def laplace(net, w, X, T, alpha, beta=None):
    """The Laplace approximation of ``net``'s posterior at ``w`` (see :class:`Laplace`)."""
    return Laplace(net, w, X, T, alpha, beta)


def _sigmoid(x):
    """σ(x) without overflow: exp is only taken of −|x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)
