"""The benchmark problems, kernels and losses, and the data of one case (problem × loss).

Every problem is a tanh MLP in float64 with E = Σ_n E_n over N samples. A *case* holds the parameters,
inputs, targets and HVP direction that every implementation receives, so that their results can be
compared entry for entry.
"""
from dataclasses import dataclass, field

import numpy as np

KERNELS = ("gradient", "hvp", "hessian", "diagonal", "outer", "jacobian")
LOSSES = ("sse", "ce")
FIRST_ORDER = ("gradient", "hvp")


@dataclass(frozen=True)
class Problem:
    """A network ``sizes = [d0, ..., dL]`` evaluated on N samples, and the kernels run on it."""
    name: str
    sizes: tuple
    N: int
    kernels: tuple = KERNELS

    @property
    def n_params(self):
        """W = Σ_l d_l (d_{l−1} + 1)."""
        return sum(d_out * (d_in + 1) for d_in, d_out in zip(self.sizes, self.sizes[1:]))

    @property
    def K(self):
        """Outputs d_L."""
        return self.sizes[-1]

    def multiply_adds(self, kernel):
        """Multiply-adds per sample of the weight products of derive's ``gradient`` or ``hvp``.

        With F = Σ_l d_l d_{l−1} (one product through every layer) and B = the same sum without the first
        layer (nothing is propagated back to the inputs, and R{z⁽⁰⁾} = 0): the gradient is the forward
        pass, backpropagation and the sums δ⁽ˡ⁾z⁽ˡ⁻¹⁾ᵀ, 2F + B; the HVP is the forward pass, the R-forward
        pass V z + W R{z} (F + B), backpropagation (B), the R-backward pass Vᵀδ + WᵀR{δ} (2B) and the sums
        R{δ}zᵀ + δR{z}ᵀ (F + B), 3F + 5B (PRML 5.101–5.111; it needs no gradient)."""
        pairs = [d_in * d_out for d_in, d_out in zip(self.sizes, self.sizes[1:])]
        F, B = sum(pairs), sum(pairs[1:])
        return {"gradient": 2 * F + B, "hvp": 3 * F + 5 * B}[kernel]


PROBLEMS = (
    Problem("tiny", (4, 8, 2), 32),
    Problem("small", (10, 32, 3), 256),
    Problem("medium", (20, 100, 5), 1024),
    Problem("large", (50, 200, 10), 2048),
    Problem("deep", (20, 64, 64, 64, 5), 1024),
    Problem("hvp-big", (100, 512, 512, 10), 4096, kernels=FIRST_ORDER),
)

# --quick: the three smallest problems with every kernel, and deep for the O(NW) kernels only.
QUICK = {"tiny": KERNELS, "small": KERNELS, "medium": KERNELS, "deep": FIRST_ORDER}


def select(names=None, quick=False):
    """The problems to run, in the fixed order of PROBLEMS (which the time estimates rely on)."""
    unknown = set(names or ()) - {p.name for p in PROBLEMS}
    if unknown:
        raise SystemExit("unknown problem(s): %s (choose from %s)"
                         % (", ".join(sorted(unknown)), ", ".join(p.name for p in PROBLEMS)))
    chosen = []
    for problem in PROBLEMS:
        if names is not None and problem.name not in names:
            continue
        if quick:
            if problem.name not in QUICK:
                continue
            problem = Problem(problem.name, problem.sizes, problem.N, QUICK[problem.name])
        chosen.append(problem)
    return chosen


@dataclass
class Case:
    """One problem with one loss: w = net.init(seed=0), X ~ N(0, 1), targets, and an HVP direction v."""
    problem: Problem
    loss: str
    w: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    T: np.ndarray = field(repr=False)
    v: np.ndarray = field(repr=False)


def make_case(problem, loss, net):
    """The data of ``problem`` with ``loss`` for the derive network ``net`` (which gives w).

    sse targets are N(0, 1); ce targets are one-hot rows."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(problem.N, problem.sizes[0]))
    if loss == "sse":
        T = rng.normal(size=(problem.N, problem.K))
    else:
        T = np.eye(problem.K)[rng.integers(problem.K, size=problem.N)]
    v = rng.normal(size=problem.n_params)
    return Case(problem, loss, net.init(seed=0), X, T, v)


def unflatten(w, sizes):
    """[(W⁽ˡ⁾ (d_l, d_{l−1}), b⁽ˡ⁾ (d_l,))] from derive's flat vector — W row-major, then b, layer by
    layer — for any array type with slicing and reshape (NumPy, torch, JAX)."""
    layers, offset = [], 0
    for d_in, d_out in zip(sizes, sizes[1:]):
        W = w[offset:offset + d_in * d_out].reshape(d_out, d_in)
        offset += d_in * d_out
        layers.append((W, w[offset:offset + d_out]))
        offset += d_out
    return layers


def hessian_chunk(problem, budget):
    """Basis directions per vmapped batch of a peer's Hessian, so that the batched tangents stay under
    ``budget`` bytes (the whole Hessian at once when they do).

    Forward-over-reverse carries, for each direction, about 8 float64 arrays of N × Σ_l d_l values
    (the tangents of a, z and δ of every layer, and temporaries)."""
    per_direction = 8 * 8 * problem.N * sum(problem.sizes[1:])
    return max(1, int(budget // per_direction))
