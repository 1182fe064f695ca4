"""The torch.func peer: the same tanh MLP and losses on the same flat parameter vector.

gradient = grad; HVP = jvp of grad (forward-over-reverse). Hessian = torch.func.hessian (jacfwd of
jacrev), or, when its batched tangents would pass TANGENT_BYTES, the same forward-over-reverse product
vmapped over batches of basis directions (faster as well: medium 34 s unbatched, 6 s in batches).
Outer product = Σ_n J_nᵀ Λ_n J_n with J_n = jacrev of one sample's logits and Λ_n the Hessian of its
loss in the logits. Input Jacobian = vmap(jacrev) of one sample's outputs. Importing this module raises
ImportError when torch is not installed.
"""
import time

import numpy as np

# torch and derive share one GNU OpenMP runtime in this process (torch's bundled libgomp.so.1 has the
# system's soname, and impl_derive loads derive's kernels first), so both run with its default wait policy.
import torch  # noqa: E402
from torch.func import grad, hessian, jacrev, jvp, vjp, vmap  # noqa: E402

from problems import hessian_chunk, unflatten  # noqa: E402

NAME = "torch.func"
VERSION = torch.__version__

TANGENT_BYTES = 2e8     # per batch of Hessian directions; tuned on a 2-core machine

torch.set_default_dtype(torch.float64)
torch.set_num_threads(2)


def logits(w, X, sizes):
    """Pre-activations a⁽ᴸ⁾ of the output layer, (N, d_L); tanh hidden units."""
    *hidden, (W, b) = unflatten(w, sizes)
    z = X
    for Wl, bl in hidden:
        z = torch.tanh(z @ Wl.T + bl)
    return z @ W.T + b


def loss_of_logits(a, T, loss):
    """E summed over the rows of a: sse ½Σ(a − t)², ce −Σ t log softmax(a)."""
    if loss == "sse":
        return 0.5 * ((a - T) ** 2).sum()
    return -(T * torch.log_softmax(a, dim=-1)).sum()


def outputs(a, loss):
    """The canonical link: identity for sse, softmax for ce."""
    return a if loss == "sse" else torch.softmax(a, dim=-1)


class Torch:
    """torch.func kernels of one case; every function returns a NumPy array."""

    name = NAME

    def __init__(self, case):
        self.case = case
        self.sizes, self.loss = case.problem.sizes, case.loss
        self.w, self.X, self.T, self.v = (torch.from_numpy(a) for a in (case.w, case.X, case.T, case.v))
        self.chunk = hessian_chunk(case.problem, TANGENT_BYTES)

    def error(self, w):
        return loss_of_logits(logits(w, self.X, self.sizes), self.T, self.loss)

    def compile(self, kernel):
        """torch.func runs eagerly: nothing to compile."""
        return None

    def function(self, kernel):
        return {"gradient": self.gradient, "hvp": lambda: self.hvp(self.v), "hessian": self.hessian,
                "diagonal": self.diagonal, "outer": self.outer, "jacobian": self.jacobian}[kernel]

    def gradient(self):
        return grad(self.error)(self.w).numpy()

    def hvp(self, u):
        return self._hvp(torch.as_tensor(u)).numpy()

    def _hvp(self, u):
        return jvp(grad(self.error), (self.w,), (u,))[1]

    def hessian(self):
        W = self.case.problem.n_params
        if self.chunk >= W:
            return hessian(self.error)(self.w).numpy()
        H = torch.empty(W, W)
        rows = vmap(self._hvp)
        for start in range(0, W, self.chunk):
            stop = min(start + self.chunk, W)
            basis = torch.zeros(stop - start, W)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            H[start:stop] = rows(basis)  # H is symmetric: rows of H are its columns
        return H.numpy()

    def diagonal(self):
        """No cheaper exact diagonal in torch.func: the diagonal of the full Hessian."""
        return np.ascontiguousarray(np.diagonal(self.hessian()))

    def outer(self):
        J = self._logit_jacobians()                                           # (N, K, W)
        A = logits(self.w, self.X, self.sizes)
        Lam = vmap(hessian(lambda a, t: loss_of_logits(a, t, self.loss)))(A, self.T)  # (N, K, K)
        N, K, W = J.shape
        return (J.reshape(N * K, W).T @ (Lam @ J).reshape(N * K, W)).numpy()

    def jacobian(self):
        def one(x):
            return outputs(logits(self.w, x[None], self.sizes)[0], self.loss)
        return vmap(jacrev(one))(self.X).numpy()

    def estimate_hessian(self, count=16):
        """Seconds the Hessian would take, from timing ``count`` of its rows (a batched HVP)."""
        count = min(count, self.case.problem.n_params)
        basis = torch.eye(count, self.case.problem.n_params)
        rows = vmap(self._hvp)
        rows(basis)
        start = time.perf_counter()
        rows(basis)
        return (time.perf_counter() - start) * self.case.problem.n_params / count

    def ggn_vector_product(self, u):
        """(Σ_n J_nᵀ Λ_n J_n) u without forming it: for checking an outer product too big to form."""
        u = torch.as_tensor(u)
        f = lambda w: logits(w, self.X, self.sizes)
        A, Ju = jvp(f, (self.w,), (u,))
        LJu = jvp(grad(lambda a: loss_of_logits(a, self.T, self.loss)), (A,), (Ju,))[1]
        return vjp(f, self.w)[1](LJu)[0].numpy()

    def _logit_jacobians(self):
        """J_n = ∂a⁽ᴸ⁾_n/∂w for every sample, (N, K, W): jacrev of one sample, vmapped."""
        def one(x):
            return jacrev(lambda w: logits(w, x[None], self.sizes)[0])(self.w)
        return vmap(one)(self.X)



Peer = Torch
