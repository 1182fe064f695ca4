"""Helpers shared by the specification tests (test_layers, test_loss, test_scalar).

``same_equation`` decides whether a derived right-hand side equals a form typed from the reference sheet
(PRML §5.3–5.4) although the two may be arranged differently: it substitutes small concrete sizes,
expands every sum, evaluates Kronecker deltas at concrete indices (every combination of concrete free
index values, so both j == j' and j != j' occur), uses the symmetry of M and Λ, and compares the
expanded difference with zero.

Until ``derive/expressions.py`` exists, the tests can run with ``PYTHONPATH=/tmp/stub``.
"""
import itertools
import os

import mpmath
import numpy as np
import pytest
import sympy as sp

#: Base names of the quantities that are symmetric by definition (M = ∂²E_n/∂a∂aᵀ, Λ = M⁽ᴸ⁾).
SYMMETRIC_PREFIXES = ("M^", r"\Lambda")


def _is_symmetric_entry(e):
    return (isinstance(e, sp.Indexed) and len(e.indices) == 2
            and str(e.base.label).startswith(SYMMETRIC_PREFIXES)
            and all(ix.is_Integer for ix in e.indices))


def symmetrise(expr):
    """M[a, b] → M[min(a, b), max(a, b)] for concrete a, b (also Λ)."""
    return expr.replace(_is_symmetric_entry,
                        lambda e: e.base[min(e.indices), max(e.indices)])


def _size_map(exprs, sizes):
    """{size Symbol: Integer} for every symbol in ``exprs`` named in ``sizes`` (matched by name)."""
    mapping = {}
    for expr in exprs:
        for s in expr.free_symbols:
            if isinstance(s, sp.Symbol) and s.name in sizes:
                mapping[s] = sp.Integer(sizes[s.name])
    return mapping


def _unknown_sizes(expr, sizes):
    return {s for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name.startswith("d_{")
            and s.name not in sizes}


def equation_mismatch(derived, printed, sizes, free=None):
    """None when ``derived`` equals ``printed``, else a description of the first difference found.

    sizes: {size-symbol name ("d_{l}", "W", ...): int} — use different values per layer.
    free:  {free index Symbol: size name or int} — the range 1..n of every free index of the equation;
           all combinations of concrete values are checked.
    """
    free = dict(free or {})
    derived, printed = sp.sympify(derived), sp.sympify(printed)
    for name, expr in (("derived", derived), ("printed", printed)):
        unknown = _unknown_sizes(expr, sizes)
        if unknown:
            return "%s form has sizes without a concrete value: %s" % (name, unknown)
    size_subs = _size_map((derived, printed), sizes)
    derived_s, printed_s = derived.xreplace(size_subs), printed.xreplace(size_subs)

    # every free integer symbol (an index) must be given a range; an unexpected one is a mismatch
    indices = {s for e in (derived_s, printed_s) for s in e.free_symbols
               if isinstance(s, sp.Symbol) and s.is_integer}
    missing = indices - set(free)
    if missing:
        return "free indices without a range (derived %s, printed %s): %s" % (
            derived_s.free_symbols, printed_s.free_symbols, missing)

    ranges = []
    for index, n in free.items():
        n = sizes[n] if isinstance(n, str) else n
        ranges.append([(index, sp.Integer(v)) for v in range(1, n + 1)])
    for combination in itertools.product(*ranges):
        values = dict(combination)
        lhs = symmetrise(derived_s.subs(values, simultaneous=True).doit())
        rhs = symmetrise(printed_s.subs(values, simultaneous=True).doit())
        difference = sp.expand(lhs - rhs)
        if difference != 0:
            return "at %s: derived - printed = %s" % (values, difference)
    return None


def same_equation(derived, printed, sizes, free=None):
    """True when the two forms agree at every combination of concrete free index values."""
    return equation_mismatch(derived, printed, sizes, free) is None


def assert_same_equation(derived, printed, sizes, free=None):
    mismatch = equation_mismatch(derived, printed, sizes, free)
    assert mismatch is None, "derived %s\n printed %s\n %s" % (derived, printed, mismatch)


# --- NumPy references shared by the kernel tests -----------------------------------------------------


def np_sigmoid(x):
    """σ(x) in float64 without overflow, written independently of derive's printed helper."""
    x = np.asarray(x, dtype=float)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def np_softplus(x):
    """log(1 + e^x) in float64 without overflow."""
    x = np.asarray(x, dtype=float)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def mp_output_derivatives(loss, a_row, t_row):
    """(Λ, ∂y/∂a) of one sample from PRML's forms (5.75–5.77; softmax: Σt (diag y − y yᵀ) and
    diag y − y yᵀ; logistic: diag y(1 − y) for both) in 60-digit mpmath, rounded to float64 arrays."""
    with mpmath.workdps(60):
        a_mp = [mpmath.mpf(float(x)) for x in a_row]
        K = len(a_mp)
        if loss == "bce":
            y = [1 / (1 + mpmath.exp(-x)) for x in a_mp]
            jac = [[y[i] * (1 - y[i]) if i == j else 0 for j in range(K)] for i in range(K)]
            lam = jac
        else:
            norm = sum(mpmath.exp(x) for x in a_mp)
            y = [mpmath.exp(x) / norm for x in a_mp]
            jac = [[y[i] * ((1 if i == j else 0) - y[j]) for j in range(K)] for i in range(K)]
            total = sum(mpmath.mpf(float(x)) for x in t_row)
            lam = [[total * entry for entry in row] for row in jac]
        return (np.array([[float(x) for x in row] for row in lam]),
                np.array([[float(x) for x in row] for row in jac]))


def rel(value, reference):
    """Largest entrywise deviation of ``value`` from ``reference``, relative to reference's largest entry."""
    return np.max(np.abs(value - reference)) / max(np.max(np.abs(reference)), 1e-300)


def random_problem(net, samples=5, seed=0):
    """(w, X, T) for a derive.MLP: random weights, inputs ~ N(0, 1), and targets of the loss's kind
    (cross-entropy targets that do not sum to one)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(scale=0.6, size=net.n_params)
    X = rng.normal(size=(samples, net.sizes[0]))
    K = net.sizes[-1]
    T = {"sse": rng.normal(size=(samples, K)), "bce": rng.uniform(size=(samples, K)),
         "ce": rng.uniform(0.1, 1.0, size=(samples, K))}[net.loss.name]
    return w, X, T


@pytest.fixture
def threaded_blocks():
    """Every error, gradient, hvp and jacobian call split into blocks of samples that run in OpenMP
    threads, even for the small networks of the tests (normally only problems with enough work per block
    are). Skipped with one OpenMP thread or a BLAS other than OpenBLAS, except under CI."""
    from derive.kernels import load_network
    network = load_network()
    if network.threading_info()["threads"] < 2:
        if os.environ.get("CI"):
            pytest.fail("CI machines have 2 cores and OpenBLAS: the threaded passes must be tested there")
        pytest.skip("one OpenMP thread, or a BLAS other than OpenBLAS behind scipy")
    old = network._set_part_work(1)
    yield network
    network._set_part_work(old)


@pytest.fixture(params=["lanes", "blas"])
def hvp_passes(request):
    """H v through derive_lanes (samples in SIMD lanes, which the HVP of a narrow network takes; every
    network of the tests is narrow) or through the BLAS passes of the wider ones: the test runs once each.
    Yields the LANES_SCRATCH setting in force."""
    from derive.kernels import load_network
    network = load_network()
    scratch = 1 << 40 if request.param == "lanes" else 0
    old = network._set_lanes(scratch, 128)
    yield scratch
    network._set_lanes(*old)
