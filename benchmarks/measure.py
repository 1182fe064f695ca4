"""Timing, peak memory, the machine's GEMM rate, time estimates and the agreement of results."""
import math
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Budget:
    """How long to time one cell (one kernel of one implementation on one case).

    After a warm-up call, calls are repeated until at least ``min_reps`` were timed and together they
    took ``target`` seconds, or ``max_reps`` were timed. A first call that takes ``single`` seconds or
    more is the only measurement (the cell would otherwise cost at least 4 × single). A peer's
    Hessian, diagonal or outer product whose estimated time exceeds ``peer_limit`` seconds is
    skipped; so is a peer Hessian of more than ``peer_max_params`` parameters. ``peer_pairs``: how many
    alternating pairs of derive and a peer time a ratio that a target compares (see paired_ratio)."""
    target: float
    min_reps: int
    max_reps: int
    single: float
    peer_limit: float
    peer_max_params: float
    peer_pairs: int


FULL = Budget(target=0.5, min_reps=3, max_reps=100, single=15.0, peer_limit=120.0,
              peer_max_params=float("inf"), peer_pairs=15)
QUICK = Budget(target=0.1, min_reps=3, max_reps=20, single=0.5, peer_limit=20.0,
               peer_max_params=3000, peer_pairs=7)


@dataclass
class Timing:
    """The timed calls of one cell: ``times`` holds seconds per call, each the mean of a batch of
    ``batch`` consecutive calls; ``result`` is the first call's result."""
    times: list
    result: object = field(repr=False)
    peak_mib: float = None
    batch: int = 1

    @property
    def median(self):
        return float(np.median(self.times))


SETTLE_S = 0.2   # pause before each cell: threads another implementation left spinning go idle first


def time_calls(fn, budget, trace_memory=False):
    """Time ``fn()`` by the rules of ``budget``; with ``trace_memory`` the first call also reports
    its peak of traced (Python and NumPy) allocations in MiB. Waits SETTLE_S seconds first: thread pools
    (OpenBLAS, OpenMP, XLA's) spin for a while after their last task and would otherwise slow down
    whichever implementation is timed next. Calls too fast for ``budget.max_reps`` of them to last
    ``budget.target`` are timed in batches (see batch_size)."""
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    result, peak = peak_mib(fn) if trace_memory else (fn(), None)
    first = time.perf_counter() - start
    if first >= budget.single:
        return Timing([first], result, peak)
    batch = 1
    if first * budget.max_reps < budget.target:   # a second untimed call sizes the batches
        start = time.perf_counter()
        fn()
        batch = batch_size(min(first, time.perf_counter() - start), budget)
    times, elapsed = [], 0.0
    while len(times) < budget.min_reps or (elapsed < budget.target and len(times) < budget.max_reps):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        took = time.perf_counter() - start
        elapsed += took
        times.append(took / batch)
    return Timing(times, result, peak, batch)


def paired_ratio(fn_a, fn_b, budget, min_pairs=7, pause=0.0, max_pairs=None, warm=0.0):
    """The cost of ``fn_a`` as a multiple of ``fn_b``'s, measured in alternating pairs: each pair times a
    batch of ``fn_a`` calls and, right after it, a batch of ``fn_b`` calls (batches sized as in
    time_calls, for ``max_pairs`` samples, default ``budget.max_reps``), until at least ``min_pairs`` pairs
    were timed and together they took ``budget.target`` seconds, or ``max_pairs`` pairs were. Returns the
    ratio of each pair (a/b, per call). The two calls of a pair meet the same state of the machine -- on
    a VM whose cores slow down by a third for minutes at a time the medians of two cells timed seconds
    apart do not -- so the median of these
    ratios is the steadier estimate of a ratio of two kernels of one implementation. With ``pause`` > 0,
    each batch is preceded by that many seconds of sleep and then by ``warm`` seconds of untimed calls
    of the same function (neither counted in ``budget.target``): for two implementations with thread
    pools of their own, whose threads keep spinning for a while after their last task and would slow the
    other's batch right after, while the first calls after a sleep wake the cores and threads up again
    (a 32 µs two-thread call took 210 µs as the first after 50 ms of sleep) and would otherwise count
    against whichever implementation uses more cores."""
    max_pairs = max_pairs or budget.max_reps
    time.sleep(SETTLE_S)
    fn_a(), fn_b()
    calls = []
    for fn in (fn_a, fn_b):
        start = time.perf_counter()
        fn()
        calls.append(batch_size(time.perf_counter() - start, budget, max_pairs))
    ratios, elapsed = [], 0.0
    while len(ratios) < min_pairs or (elapsed < budget.target and len(ratios) < max_pairs):
        took = []
        for fn, batch in zip((fn_a, fn_b), calls):
            if pause:
                time.sleep(pause)
                until = time.perf_counter() + warm
                while time.perf_counter() < until:
                    fn()
            start = time.perf_counter()
            for _ in range(batch):
                fn()
            took.append((time.perf_counter() - start) / batch)
            elapsed += took[-1] * batch
        ratios.append(took[0] / took[1])
    return ratios


def batch_size(call_s, budget, samples=None):
    """Calls per timed sample for calls of ``call_s`` seconds: as many as let ``samples`` (default
    ``budget.max_reps``) samples last ``budget.target`` (at least 1). One call per sample would time a
    call of a few microseconds for a fraction of a millisecond in all, most of it while the core, its caches and the threads are still
    waking up from the pause before the cell, and penalise the fastest implementation."""
    return max(1, math.ceil(budget.target / ((samples or budget.max_reps) * max(call_s, 1e-9))))


def peak_mib(fn):
    """(fn(), peak MiB allocated during the call), by tracemalloc; NumPy reports its array buffers to
    tracemalloc, so this counts every array a NumPy-allocating kernel creates."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return result, peak / 2**20


def gemm_rate(n=2000, reps=5):
    """float64 GEMM rate of this machine in flop/s: the median of ``reps`` n × n products, 2n³ flops."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    A @ B
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        A @ B
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / float(np.median(times))


def relative_error(result, reference):
    """max |result − reference| / max |reference|."""
    result, reference = np.asarray(result), np.asarray(reference)
    if result.shape != reference.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(reference))), np.finfo(float).tiny)
    return float(np.max(np.abs(result - reference))) / scale


def cost(problem, kernel):
    """The leading-order cost of a peer's kernel, for scaling a measured time to another problem."""
    N, W, K = problem.N, problem.n_params, problem.K
    return {"gradient": N * W, "hvp": N * W, "jacobian": N * K * W,
            "hessian": N * W * W, "diagonal": N * W * W, "outer": N * K * W * W}[kernel]


class Estimator:
    """Estimates a cell's seconds from the same implementation's last measurement of that kernel and
    loss on an earlier problem, scaled by :func:`cost`."""

    def __init__(self):
        self.last = {}

    def record(self, impl, kernel, loss, problem, seconds):
        self.last[impl, kernel, loss] = (cost(problem, kernel), seconds)

    def estimate(self, impl, kernel, loss, problem):
        """Estimated seconds, or None without an earlier measurement."""
        if (impl, kernel, loss) not in self.last:
            return None
        measured_cost, seconds = self.last[impl, kernel, loss]
        return seconds * cost(problem, kernel) / measured_cost
