"""The JAX peer (float64, jit): the same tanh MLP and losses on the same flat parameter vector.

gradient = jax.grad; HVP = jax.jvp of jax.grad (forward-over-reverse). Hessian = the forward-over-reverse
product that jax.hessian vmaps over all W basis directions, here mapped with jax.lax.map over batches of
DIRECTIONS of them (jax.hessian itself when W ≤ DIRECTIONS): never slower and it fits in memory (medium:
10.9 s with jax.hessian, 2.5 s in batches). Outer product = Σ_n J_nᵀ Λ_n J_n with J_n = jacrev of one
sample's logits and Λ_n the Hessian of its loss in the logits. Input Jacobian = vmap(jacrev) of one
sample's outputs. Each kernel is compiled ahead of time (``compile``), so its timings exclude
compilation. Importing this module raises ImportError when JAX is not installed.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from problems import hessian_chunk, unflatten

jax.config.update("jax_enable_x64", True)

DIRECTIONS = 16         # Hessian directions per batch; tuned on a 2-core machine
MEMORY = 1e9            # ... fewer if their tangents would pass this many bytes

NAME = "JAX"
VERSION = jax.__version__


def logits(w, X, sizes):
    """Pre-activations a⁽ᴸ⁾ of the output layer, (N, d_L); tanh hidden units."""
    *hidden, (W, b) = unflatten(w, sizes)
    z = X
    for Wl, bl in hidden:
        z = jnp.tanh(z @ Wl.T + bl)
    return z @ W.T + b


def loss_of_logits(a, T, loss):
    """E summed over the rows of a: sse ½Σ(a − t)², ce −Σ t log softmax(a)."""
    if loss == "sse":
        return 0.5 * jnp.sum((a - T) ** 2)
    return -jnp.sum(T * jax.nn.log_softmax(a, axis=-1))


def outputs(a, loss):
    """The canonical link: identity for sse, softmax for ce."""
    return a if loss == "sse" else jax.nn.softmax(a, axis=-1)


def kernel_functions(sizes, loss, n_params, chunk):
    """Pure functions f(w, X, T, v) of every kernel (v is ignored where it has no use)."""
    def error(w, X, T):
        return loss_of_logits(logits(w, X, sizes), T, loss)

    def hvp(w, X, T, v):
        return jax.jvp(lambda w: jax.grad(error)(w, X, T), (w,), (v,))[1]

    def hessian(w, X, T, v):
        if chunk >= n_params:
            return jax.hessian(error)(w, X, T)
        row = lambda i: hvp(w, X, T, jax.nn.one_hot(i, n_params, dtype=w.dtype))
        return jax.lax.map(row, jnp.arange(n_params), batch_size=chunk)  # symmetric: rows = columns

    def outer(w, X, T, v):
        J = jax.vmap(lambda x: jax.jacrev(lambda w: logits(w, x[None], sizes)[0])(w))(X)   # (N, K, W)
        Lam = jax.vmap(jax.hessian(lambda a, t: loss_of_logits(a, t, loss)))(logits(w, X, sizes), T)
        N, K, W = J.shape
        return J.reshape(N * K, W).T @ (Lam @ J).reshape(N * K, W)

    def jacobian(w, X, T, v):
        one = lambda x: outputs(logits(w, x[None], sizes)[0], loss)
        return jax.vmap(jax.jacrev(one))(X)

    def ggn_vector_product(w, X, T, v):
        f = lambda w: logits(w, X, sizes)
        A, Jv = jax.jvp(f, (w,), (v,))
        LJv = jax.jvp(jax.grad(lambda a: loss_of_logits(a, T, loss)), (A,), (Jv,))[1]
        return jax.vjp(f, w)[1](LJv)[0]

    return {"gradient": lambda w, X, T, v: jax.grad(error)(w, X, T), "hvp": hvp, "hessian": hessian,
            "diagonal": lambda w, X, T, v: jnp.diagonal(hessian(w, X, T, v)), "outer": outer,
            "jacobian": jacobian, "ggn_vector_product": ggn_vector_product}


class Jax:
    """Compiled JAX kernels of one case; every function returns a NumPy array."""

    name = NAME

    def __init__(self, case):
        self.case = case
        problem = case.problem
        self.args = tuple(jnp.asarray(a) for a in (case.w, case.X, case.T, case.v))
        self.functions = kernel_functions(problem.sizes, case.loss, problem.n_params,
                                          min(DIRECTIONS, hessian_chunk(problem, MEMORY)))
        self.compiled = {}

    def compile(self, kernel):
        """Trace, lower and compile ``kernel`` for this case's shapes; returns the seconds it took."""
        start = time.perf_counter()
        self.compiled[kernel] = jax.jit(self.functions[kernel]).lower(*self.args).compile()
        return time.perf_counter() - start

    def function(self, kernel):
        """A callable of no arguments running the compiled kernel to completion (compiles if needed)."""
        if kernel not in self.compiled:
            self.compile(kernel)
        compiled, args = self.compiled[kernel], self.args
        return lambda: np.asarray(compiled(*args).block_until_ready())

    def estimate_hessian(self, count=16):
        """Seconds the Hessian would take, from timing ``count`` of its rows (a batched HVP)."""
        w, X, T, _ = self.args
        W = self.case.problem.n_params
        count = min(count, W)
        rows = jax.jit(jax.vmap(self.functions["hvp"], in_axes=(None, None, None, 0)))
        basis = jnp.eye(count, W)
        rows(w, X, T, basis).block_until_ready()
        start = time.perf_counter()
        rows(w, X, T, basis).block_until_ready()
        return (time.perf_counter() - start) * W / count

    def hvp(self, u):
        return self._call("hvp", u)

    def ggn_vector_product(self, u):
        return self._call("ggn_vector_product", u)

    def _call(self, kernel, u):
        w, X, T, _ = self.args
        return np.asarray(jax.jit(self.functions[kernel])(w, X, T, jnp.asarray(u)))


Peer = Jax
