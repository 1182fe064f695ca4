"""Stage 7 — the public API: a multilayer perceptron whose derivatives come from compiled kernels.

In:  layer sizes, activation(s) and a loss; then parameters w, inputs X, targets T (NumPy arrays).
Out: error, gradient, exact Hessian and Hessian-vector products, computed by the network kernels
     (``derive.generated.network``) with the activation kernels loaded by :mod:`derive.kernels`.

Conventions: w is one flat float64 vector holding, for l = 1..L, W⁽ˡ⁾ (d_l × d_{l−1}, row-major) then
b⁽ˡ⁾; X is (N, d_0) and T is (N, d_L); E = Σ_n E_n is a sum over samples, not a mean; the outputs use the
loss's canonical link (sse: identity, bce: logistic, ce: softmax).

Argument rules, checked before anything is computed: arrays of real numbers (any integer or floating
dtype) are converted to C-contiguous float64; complex, boolean, object and string arrays and masked
arrays are refused with TypeError; wrong shapes, empty batches and NaN or infinite values are refused with
ValueError naming the argument.
"""
import collections.abc
import operator

import numpy as np

from .errors import DeriveError, SpecificationError
from .kernels import load, load_network
from .specification import LOSSES, resolve_activation, resolve_loss


class MLP:
    """A fully connected feed-forward network ``sizes = [d0, d1, ..., dL]`` (any depth L ≥ 1).

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, inputs first.
    activation : str, Activation, or list of them
        The hidden units' activation h: a built-in name (``derive.ACTIVATIONS``), a name that
        ``derive generate`` registered (:mod:`derive.names`), an expression in ``a`` such as
        ``"a*tanh(log(1 + exp(a)))"``, an :class:`~derive.Activation`, or a list with one per hidden
        layer. A new expression is compiled on first use and cached.
    loss : {"sse", "bce", "ce"}
        Sum-of-squares with linear outputs, binary cross-entropy with logistic outputs, or
        cross-entropy with softmax outputs.
    """

    def __init__(self, sizes, activation="tanh", loss="sse"):
        self.sizes = _check_sizes(sizes)
        self.L = len(self.sizes) - 1
        self.activations = _check_activations(activation, self.L)
        self.loss = resolve_loss(loss)
        self.kernels = tuple(load(a) for a in self.activations)
        self._network = load_network()
        self._plan = self._network.Plan(list(self.sizes), [m.capsule() for m in self.kernels],
                                         list(LOSSES).index(self.loss.name), self._checked)
        self.n_params = self._plan.n_params

    def __repr__(self):
        names = ", ".join(a.name for a in self.activations) or "none"
        return "MLP(sizes=%s, activation=[%s], loss=%r, n_params=%d)" % (
            list(self.sizes), names, self.loss.name, self.n_params)

    # --- parameters ----------------------------------------------------------------------------

    def init(self, seed=0):
        """Random parameters: W⁽ˡ⁾ ~ N(0, 1/d_{l−1}) (LeCun), b⁽ˡ⁾ = 0; float64 vector of length W."""
        rng = np.random.default_rng(seed)
        parts = []
        for d_in, d_out in zip(self.sizes, self.sizes[1:]):
            parts.append(rng.normal(0.0, 1.0 / np.sqrt(d_in), size=d_in * d_out))
            parts.append(np.zeros(d_out))
        return np.concatenate(parts)

    def unflatten(self, w):
        """[(W⁽ˡ⁾ (d_l, d_{l−1}), b⁽ˡ⁾ (d_l,)) for l = 1..L], views into ``w``."""
        w = self._params(w)
        layers, offset = [], 0
        for d_in, d_out in zip(self.sizes, self.sizes[1:]):
            W = w[offset:offset + d_in * d_out].reshape(d_out, d_in)
            offset += d_in * d_out
            layers.append((W, w[offset:offset + d_out]))
            offset += d_out
        return layers

    # --- kernels -------------------------------------------------------------------------------

    def forward(self, w, X):
        """Network outputs y, (N, d_L)."""
        w, X = self._params(w), self._inputs(X)
        return self._finite(self._plan.forward(w, X), "w and X")

    # error, gradient, hvp, jacobian and hessian hand their arguments to the kernels as they are: they
    # take C-contiguous float64 arrays of the right shapes directly and call back _checked for anything
    # else (a Python-level check costs as much as a small network's gradient).

    def error(self, w, X, T):
        """E = Σ_n E_n (PRML 5.11 / 5.21 / 5.24), a float."""
        return float(self._plan.error(w, X, T))

    def gradient(self, w, X, T):
        """∇E, (W,), by backpropagation (PRML 5.53–5.56)."""
        return self._plan.gradient(w, X, T, False)[1]

    def error_and_gradient(self, w, X, T):
        """(E, ∇E) from one forward and one backward pass."""
        E, g = self._plan.gradient(w, X, T)
        return float(E), g

    def hessian(self, w, X, T):
        """The exact Hessian ∇∇E, (W, W), by second-order backpropagation (PRML 5.92–5.95 and their
        L-layer forms), assembled from its layer blocks with BLAS. Costs O(N W²) time and W² memory."""
        _check_fits(self.n_params)
        return self._finite(self._plan.hessian(w, X, T), "w, X and T")

    def hvp(self, w, X, T, v):
        """H v, (W,), by Pearlmutter's R-operator (PRML 5.96–5.111), never forming H. O(N W) time."""
        return self._plan.hvp(w, X, T, v)

    def jacobian(self, w, X):
        """J[n, k, i] = ∂y_k/∂x_i, (N, d_L, d_0): the output Jacobian (PRML 5.75–5.77) backpropagated
        through the layers (5.74) and into the inputs (5.73). O(N d_L W)."""
        return self._plan.jacobian(w, X)

    def hessian_diagonal(self, w, X, T, method="exact"):
        """diag(H), (W,), without forming H.

        ``method="exact"``: 5.79 with the exact M⁽ˡ⁾ = ∂²E_n/∂a⁽ˡ⁾∂a⁽ˡ⁾ᵀ of the M recursion (5.80 and its
        L-layer form); costs O(N Σ_l d_l² d_{l+1}), far less than the W × W Hessian.
        ``method="becker_lecun"``: the O(W) approximation of Becker and LeCun (5.81), which keeps only
        the diagonals of M; exact when every Λ is diagonal (sse, bce) and L ≤ 2.
        """
        if method not in ("exact", "becker_lecun"):
            raise ValueError("method must be 'exact' or 'becker_lecun', got %r" % (method,))
        w, X, T = self._problem(w, X, T)
        return self._finite(self._plan.hessian_diagonal(w, X, T, method == "exact"), "w, X and T")

    def outer_product(self, w, X, T):
        """G = Σ_n J_nᵀ Λ_n J_n, (W, W), J_n = ∂a⁽ᴸ⁾/∂w: the outer-product (Levenberg–Marquardt,
        generalised Gauss–Newton) approximation of H (PRML 5.84, 5.85 and their general form).
        Symmetric; positive semi-definite wherever every Λ_n is (always for sse and bce; for ce where
        each target row sums to at least 0); equals H where the residuals vanish. Assembled from the
        Hessian's layer blocks without the terms in δ⁽ᴸ⁾: O(N W²), the Hessian's cost."""
        _check_fits(self.n_params)
        return self._finite(self._plan.outer_product(w, X, T), "w, X and T")

    def inverse_outer_product(self, w, X, T, alpha):
        """(outer_product + alpha·I)⁻¹, (W, W), by the sequential rank-one updates of PRML 5.87–5.89
        from H₀ = alpha·I: one Sherman–Morrison update per sample and output direction (a column of
        C_n with C_n C_nᵀ = J_nᵀ Λ_n J_n), never a dense inversion. O(N d_L W²)."""
        w, X, T = self._problem(w, X, T)
        alpha = _positive(alpha, "alpha")
        if not np.isfinite(1.0 / alpha):
            raise ValueError("alpha = %r is too small: H₀⁻¹ = I / alpha overflows float64" % alpha)
        _check_fits(self.n_params)
        return self._finite(self._plan.inverse_outer_product(w, X, T, alpha), "w, X and T")

    def finite_difference_hessian(self, w, X, T, eps=1e-4, method="gradient"):
        """H by central differences: of the backpropagated gradient (``method="gradient"``, PRML 5.91,
        2W gradient evaluations, O(W²) per sample), or of the error (``method="error"``, 5.90, 4 error
        evaluations per entry, O(W³)). Both err by O(eps²); the check on every other kernel."""
        if method not in ("gradient", "error"):
            raise ValueError("method must be 'gradient' or 'error', got %r" % (method,))
        w, X, T = self._problem(w, X, T)
        eps = _positive(eps, "eps")
        if not np.isfinite(w).all():
            raise ValueError("w contains NaN or infinite values")
        unchanged = np.flatnonzero((w + eps == w) | (w - eps == w))
        if unchanged.size:
            raise ValueError("eps = %r is below the spacing of float64 at w[%d] = %r: w ± eps == w there, and "
                             "the differences would be 0" % (eps, unchanged[0], float(w[unchanged[0]])))
        _check_fits(self.n_params)
        return self._finite(self._plan.finite_difference_hessian(w, X, T, eps, method == "gradient"), "w, X and T")

    @property
    def kept_memory(self):
        """Bytes of working memory the network keeps between kernel calls (see :meth:`release_memory`)."""
        return self._plan.lender.bytes

    def release_memory(self):
        """Free the working memory the network keeps between kernel calls.

        A call's scratch memory (up to 512 MiB; larger requests are always freed) stays with the network
        for the next call, which then skips the operating system's clearing of fresh pages -- for an HVP
        of a few milliseconds, as long as the products themselves. It is freed with the network, or now by
        this method (after a call that is using it, if one is running)."""
        self._plan.lender.release()

    # --- argument checks -----------------------------------------------------------------------

    def _params(self, w):
        return _vector(w, "w", self.n_params)

    def _inputs(self, X):
        return _matrix(X, "X", self.sizes[0])

    def _problem(self, w, X, T):
        w, X = self._params(w), self._inputs(X)
        T = _matrix(T, "T", self.sizes[-1])
        if T.shape[0] != X.shape[0]:
            raise ValueError("T has %d rows but X has %d: one target row per input row" % (T.shape[0], X.shape[0]))
        return w, X, T

    def _finite(self, result, inputs):
        """``result``, unless some entry overflowed float64 from finite ``inputs`` (then ValueError, the
        rule the kernels of error, gradient, hvp and jacobian apply themselves)."""
        return self._network.require_finite_array(result, inputs)

    def _checked(self, w, X, *rest):
        """The kernels' callback for arguments that are not yet float64 arrays of the right shapes:
        (w, X), (w, X, T) or (w, X, T, v), converted, or the error that says what is wrong."""
        if not rest:
            return self._params(w), self._inputs(X)
        w, X, T = self._problem(w, X, rest[0])
        return (w, X, T) + tuple(_vector(v, "v", self.n_params) for v in rest[1:])


MAX_LAYER_SIZE = 2**31 - 1   # BLAS takes 32-bit dimensions


def _check_sizes(sizes):
    """``sizes`` as a tuple of ints: a list, tuple, range or 1-D array of at least two positive integers
    (not bools, whose int value a typo would pass off as a size)."""
    ordered = isinstance(sizes, (collections.abc.Sequence, np.ndarray)) and not isinstance(sizes, (str, bytes))
    try:
        if not ordered or any(isinstance(d, (bool, np.bool_)) for d in sizes):
            raise TypeError
        sizes = tuple(operator.index(d) for d in sizes)
    except TypeError:
        raise TypeError("sizes must be a sequence of integers [d0, d1, ..., dL], got %r" % (sizes,)) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise SpecificationError("sizes must hold at least two positive layer sizes [d0, ..., dL], got %r"
                                 % (list(sizes),))
    if max(sizes) > MAX_LAYER_SIZE:
        raise SpecificationError("layer sizes above %d are not supported, got %r" % (MAX_LAYER_SIZE, list(sizes)))
    return sizes


def _check_activations(activation, L):
    if isinstance(activation, (list, tuple)):
        if len(activation) != L - 1:
            raise SpecificationError("got %d activations for %d hidden layers" % (len(activation), L - 1))
        return tuple(resolve_activation(a) for a in activation)
    return (resolve_activation(activation),) * (L - 1)


def _real_array(x, name):
    """``x`` as a C-contiguous float64 array of finite numbers (see the module docstring's rules)."""
    if type(x) is np.ndarray and x.dtype == np.float64 and x.flags.c_contiguous and x.flags.aligned:
        return x  # the common case, at no cost; the kernels refuse NaN and infinity themselves
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError("%s is a masked array, and its mask would be ignored: pass the values to use, e.g. "
                        "%s.filled(...) or the unmasked rows" % (name, name))
    try:
        array = np.asarray(x)
    except Exception as error:  # anything numpy cannot make an array of
        raise TypeError("%s must be an array of real numbers: %s" % (name, error)) from None
    if array.dtype.kind not in "iuf":
        raise TypeError("%s must hold real numbers (integer or floating dtype), got dtype %s"
                        % (name, array.dtype))
    return np.require(array, dtype=np.float64, requirements=("C", "A"))   # contiguous and aligned


def _vector(x, name, length):
    array = _real_array(x, name)
    if array.shape != (length,):
        raise ValueError("%s must have shape (%d,), got %s" % (name, length, array.shape))
    return array


def _matrix(x, name, columns):
    array = _real_array(x, name)
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError("%s must have shape (N, %d), got %s%s" % (name, columns, array.shape,
                                                                 _one_row_per_sample(array, name, columns)))
    if array.shape[0] == 0:
        raise ValueError("%s is an empty batch (N = 0)" % name)
    return array


def _one_row_per_sample(array, name, columns):
    """A hint for a 1-D array where one row per sample is needed: what it most likely meant."""
    if array.ndim != 1:
        return ""
    if columns == 1:
        return " (one value per sample: pass %s.reshape(-1, 1))" % name
    if array.shape[0] == columns:
        return " (one sample is a row: pass %s.reshape(1, -1))" % name
    if name == "T":
        return (" (one row of %d targets per sample; for loss 'ce', class labels go in as one-hot rows: "
                "np.eye(%d)[labels])" % (columns, columns))
    return ""


def _positive(value, name):
    value = _real_number(value, name, "a positive number")
    if not (np.isfinite(value) and value > 0):
        raise ValueError("%s must be a positive finite number, got %r" % (name, value))
    return value


def _nonnegative(value, name):
    value = _real_number(value, name, "a number >= 0")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError("%s must be a finite number >= 0, got %r" % (name, value))
    return value


def _real_number(value, name, wanted):
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError("%s must be %s, got %r" % (name, wanted, value))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError("%s must be %s, got %r" % (name, wanted, value)) from None


ALWAYS_FITS = 64 * 2**20   # bytes; a smaller matrix is not checked (reading /proc/meminfo costs ~15 µs)


def _check_fits(n_params):
    """Refuse at once a Hessian that cannot fit in memory (instead of being killed by the OS)."""
    needed = 8 * n_params * n_params
    if needed <= ALWAYS_FITS:
        return
    try:
        available = os_available_memory()
    except (OSError, ValueError):
        return
    if needed > available:
        raise DeriveError("the Hessian of %d parameters needs %.1f GiB, more than the %.1f GiB available; "
                          "use hvp() for Hessian-vector products instead"
                          % (n_params, needed / 2**30, available / 2**30))


def os_available_memory():
    """Bytes of memory available to this process (Linux: MemAvailable), or raise OSError."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("MemAvailable not found")
