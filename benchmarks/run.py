"""Benchmark derive against torch.func and JAX: gradient, HVP, exact Hessian, exact diagonal, outer
product and input Jacobian of tanh MLPs (float64, E summed over N samples), losses sse and ce.

    python benchmarks/run.py [--quick] [--problems tiny,small] [--kernels hessian,hvp]
                             [--losses sse,ce] [--json results.json]

Prints one table of median times, the ratios peer / derive, derive's peak memory and the agreement of
derive's result with the fastest peer's (relative max-abs error ≤ 1e-8, else FAIL and exit status 1),
then derive's exact-Hessian time as a multiple of the bound N·W·(W+1) / (float64 GEMM rate measured
in this run) and the issue's targets. Peers that are not installed are skipped with a note
(pip install ".[bench]", with a CPU build of torch). See benchmarks/README.md.
"""
import argparse
import gc
import importlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import measure
from impl_derive import Derive
from problems import KERNELS, LOSSES, PROBLEMS, make_case, select

TOLERANCE = 1e-8
EXPENSIVE = ("hessian", "diagonal", "outer")    # the peer cells that may be skipped
HVP_RATIO_PROBLEMS = ("medium", "large", "hvp-big")   # the target "derive's HVP costs at most 2.5x its gradient"
PAIRED_KERNELS = ("gradient", "hvp", "hessian")        # the targets that compare derive with a peer
PAIR_MAX_S = 0.5    # seconds per call (derive's and the peer's) up to which such a target is also timed in pairs
PAIR_PAUSE_S = 0.03  # sleep before each batch of a derive/peer pair: the other's threads stop spinning,
PAIR_WARM_S = 0.01   # then untimed calls: the cores and threads wake up again (see measure.paired_ratio)
PEER_MODULES = (("impl_torch", "torch.func", "torch"), ("impl_jax", "JAX", "jax"))


@dataclass
class Measurement:
    """One implementation's cell: its timing, or why it was skipped."""
    times: list = field(default_factory=list)
    result: object = field(default=None, repr=False)
    compile_s: float = None
    peak_mib: float = None
    estimate_s: float = None
    skipped: str = None
    from_hessian: bool = False     # a peer's diagonal, taken from its full Hessian
    batch: int = 1                 # calls per timed sample (see measure.time_calls)

    @property
    def median(self):
        return float(np.median(self.times)) if self.times else None

    def record(self):
        """The JSON-ready fields."""
        return {"median_s": self.median, "times_s": self.times, "reps": len(self.times), "batch": self.batch,
                "compile_s": self.compile_s, "peak_mib": self.peak_mib, "estimate_s": self.estimate_s,
                "skipped": self.skipped, "from_hessian": self.from_hessian}


@dataclass
class Row:
    """One (problem, loss, kernel): every implementation's measurement and the agreement check."""
    problem: object
    loss: str
    kernel: str
    cells: dict                    # implementation name -> Measurement
    error: float = None
    checked_against: str = None

    @property
    def ok(self):
        return self.error is None or self.error <= TOLERANCE

    def record(self):
        return {"problem": self.problem.name, "sizes": list(self.problem.sizes), "N": self.problem.N,
                "W": self.problem.n_params, "loss": self.loss, "kernel": self.kernel,
                "max_rel_err": self.error, "checked_against": self.checked_against, "ok": self.ok,
                "results": {name: cell.record() for name, cell in self.cells.items()}}


def log(message):
    print(message, file=sys.stderr, flush=True)


def load_peers(skip=()):
    """The peer modules that import, and a note for each that does not."""
    peers, notes = [], []
    for module_name, label, package in PEER_MODULES:
        if package in skip:
            notes.append("%s: skipped (--skip-peers)" % label)
            continue
        try:
            peers.append(importlib.import_module(module_name))
        except ImportError as error:
            notes.append("%s: not installed (%s) — skipped; pip install '.[bench]'" % (label, error))
    return peers, notes


class Benchmark:
    """Runs every selected cell, keeping the rows and the estimates that decide which peer cells to skip."""

    def __init__(self, budget, rate, peers):
        self.budget, self.rate, self.peers = budget, rate, peers
        self.estimator = measure.Estimator()
        self.rows = []
        self.paired = {}    # (problem name, loss) -> derive's HVP/gradient ratios in alternating pairs
        self.paired_peer = {}   # (problem name, loss, kernel) -> (peer name, peer/derive ratios in pairs)
        self.start = time.perf_counter()

    def warm_up(self):
        """Run every peer's gradient and HVP once on the tiny problem, so that one-time start-up costs
        (torch.func's first transform takes most of a second) are not taken for a slow kernel."""
        problem = PROBLEMS[0]
        case = make_case(problem, "sse", Derive.network(problem, "sse"))
        for module in self.peers:
            peer = module.Peer(case)
            for kernel in ("gradient", "hvp"):
                peer.function(kernel)()

    def run_case(self, problem, loss, kernels):
        """Every kernel of ``kernels`` that ``problem`` runs, with ``loss``, for every implementation."""
        net = Derive.network(problem, loss)
        case = make_case(problem, loss, net)
        impls = [Derive(case, net)] + [module.Peer(case) for module in self.peers]
        peer_hessians = {}          # peer name -> its Hessian's Measurement, holding only the diagonal
        for kernel in (k for k in kernels if k in problem.kernels):
            cells = {impls[0].name: self.run_derive(impls[0], kernel)}
            for peer in impls[1:]:
                cells[peer.name] = self.run_peer(peer, case, kernel, peer_hessians)
            row = Row(problem, loss, kernel, cells)
            self.check(row, case, impls[1:])
            self.rows.append(row)
            self.report_progress(row)
            self.pair_with_peer(row, impls)
            for cell in cells.values():
                cell.result = None
            gc.collect()
        if problem.name in HVP_RATIO_PROBLEMS and {"gradient", "hvp"} <= set(kernels) & set(problem.kernels):
            self.pair_hvp_with_gradient(impls[0], problem, loss)

    def pair_hvp_with_gradient(self, impl, problem, loss):
        """derive's HVP as a multiple of its gradient, timed in alternating pairs (measure.paired_ratio)."""
        ratios = measure.paired_ratio(impl.function("hvp"), impl.function("gradient"), self.budget)
        self.paired[problem.name, loss] = ratios
        log("[%6.1f s] %-8s %-3s derive HVP/gradient in %d alternating pairs: median %.3f (%.3f-%.3f)"
            % (time.perf_counter() - self.start, problem.name, loss, len(ratios), float(np.median(ratios)),
               min(ratios), max(ratios)))

    def pair_with_peer(self, row, impls):
        """The peer a target compares derive with (JAX for the gradient and HVP, the faster peer for the
        Hessian) timed against derive in alternating pairs (measure.paired_ratio), where both calls take
        at most PAIR_MAX_S: two cells timed seconds apart can meet this VM at different speeds (the cells stay
        in the table). That covers every gradient and HVP row (hvp-big's calls take 0.1-0.35 s: one call per
        batch) and the Hessians of tiny and small; the larger Hessians, seconds to minutes a call, are not
        paired."""
        if row.kernel not in PAIRED_KERNELS:
            return
        timed = {name: cell for name, cell in row.cells.items() if name != "derive" and cell.median is not None}
        if row.kernel == "hessian":
            name = min(timed, key=lambda n: timed[n].median, default=None)
        else:
            name = "JAX" if "JAX" in timed else None
        if name is None or max(timed[name].median, row.cells["derive"].median) > PAIR_MAX_S:
            return
        derive_impl, peer = impls[0], next(impl for impl in impls if impl.name == name)
        ratios = measure.paired_ratio(peer.function(row.kernel), derive_impl.function(row.kernel), self.budget,
                                      min_pairs=self.budget.peer_pairs, max_pairs=self.budget.peer_pairs,
                                      pause=PAIR_PAUSE_S, warm=PAIR_WARM_S)
        self.paired_peer[row.problem.name, row.loss, row.kernel] = (name, ratios)
        log("[%6.1f s] %-8s %-3s %-8s %s/derive in %d alternating pairs: median %.2f (%.2f-%.2f)"
            % (time.perf_counter() - self.start, row.problem.name, row.loss, row.kernel, name, len(ratios),
               float(np.median(ratios)), min(ratios), max(ratios)))

    def run_derive(self, impl, kernel):
        impl.net.release_memory()   # the first, traced, call then allocates all the memory it uses
        timing = measure.time_calls(impl.function(kernel), self.budget, trace_memory=True)
        return Measurement(timing.times, timing.result, peak_mib=timing.peak_mib, batch=timing.batch)

    def run_peer(self, peer, case, kernel, peer_hessians):
        """Time one peer kernel, unless its estimate is over budget; a peer's diagonal reuses its Hessian."""
        if kernel == "diagonal" and peer.name in peer_hessians:
            hessian = peer_hessians[peer.name]
            return Measurement(hessian.times, hessian.result, hessian.compile_s, from_hessian=True,
                               batch=hessian.batch)
        skipped, estimate = self.skip_reason(peer, case, kernel)
        if skipped:
            return Measurement(estimate_s=estimate, skipped=skipped)
        compile_s = peer.compile(kernel)
        timing = measure.time_calls(peer.function(kernel), self.budget)
        self.estimator.record(peer.name, _estimate_kernel(kernel), case.loss, case.problem, timing.median)
        cell = Measurement(timing.times, timing.result, compile_s, estimate_s=estimate,
                           from_hessian=kernel == "diagonal", batch=timing.batch)
        if kernel == "hessian":
            peer_hessians[peer.name] = Measurement(timing.times, np.diagonal(timing.result).copy(), compile_s,
                                                   batch=timing.batch)
        return cell

    def skip_reason(self, peer, case, kernel):
        """(why the peer cell is skipped or None, its estimated seconds or None)."""
        if kernel not in EXPENSIVE:
            return None, None
        problem = case.problem
        if kernel != "outer" and problem.n_params > self.budget.peer_max_params:
            return "W > %d" % self.budget.peer_max_params, None
        estimate = self.estimator.estimate(peer.name, _estimate_kernel(kernel), case.loss, problem)
        if estimate is None:
            estimate = (peer.estimate_hessian() if kernel != "outer"
                        else 2.0 * problem.N * problem.K * problem.n_params**2 / self.rate)
        if estimate > self.budget.peer_limit:
            return "est. %.3g s" % estimate, estimate
        return None, estimate

    def check(self, row, case, peers):
        """Compare derive's result with the fastest peer's; where every peer skipped an expensive kernel,
        check derive's matrix against the fastest peer's matrix-free products instead."""
        derive_result = row.cells["derive"].result
        timed = [peer for peer in peers if row.cells[peer.name].result is not None]
        if timed:
            peer = min(timed, key=lambda peer: row.cells[peer.name].median)
            row.error = measure.relative_error(derive_result, row.cells[peer.name].result)
            row.checked_against = peer.name
        elif peers:
            peer = self.fastest_hvp_peer(row, peers)
            row.error, row.checked_against = matrix_free_check(row.kernel, derive_result, case, peer)

    def fastest_hvp_peer(self, row, peers):
        """The peer with the fastest HVP on this case (the first peer when none was timed)."""
        hvp = next((r for r in self.rows if (r.problem, r.loss, r.kernel) == (row.problem, row.loss, "hvp")), None)
        timed = [peer for peer in peers if hvp is not None and hvp.cells[peer.name].median is not None]
        return min(timed, key=lambda peer: hvp.cells[peer.name].median) if timed else peers[0]

    def report_progress(self, row):
        parts = []
        for name, cell in row.cells.items():
            parts.append("%s %s" % (name, cell.skipped or "%.4g ms" % (1e3 * cell.median)))
        log("[%6.1f s] %-8s %-3s %-8s %s  err %s" % (time.perf_counter() - self.start, row.problem.name,
                                                    row.loss, row.kernel, ", ".join(parts),
                                                    "—" if row.error is None else "%.1e" % row.error))


def _estimate_kernel(kernel):
    """A peer's diagonal is its Hessian: the two share one time estimate."""
    return "hessian" if kernel == "diagonal" else kernel


def matrix_free_check(kernel, result, case, peer):
    """(max rel err, description) of derive's Hessian, diagonal or outer product against the peer's
    HVP or Gauss–Newton-vector product, for cells where no peer formed the matrix."""
    if kernel == "hessian":
        return measure.relative_error(result @ case.v, peer.hvp(case.v)), "H·v vs %s HVP" % peer.name
    if kernel == "outer":
        return (measure.relative_error(result @ case.v, peer.ggn_vector_product(case.v)),
                "G·v vs %s GGN-vp" % peer.name)
    if kernel == "diagonal":
        W = case.problem.n_params
        entries = np.unique(np.linspace(0, W - 1, 8).astype(int))
        reference = [peer.hvp(np.eye(1, W, i)[0])[i] for i in entries]
        return (measure.relative_error(result[entries], reference),
                "%d entries vs %s HVP(e_i)" % (len(entries), peer.name))
    return None, None


# --- output -----------------------------------------------------------------------------------------

def fmt_ms(seconds):
    ms = 1e3 * seconds
    return "%.0f" % ms if ms >= 100 else "%.1f" % ms if ms >= 10 else "%.3g" % ms


def fmt_ratio(ratio):
    return "%.0f" % ratio if ratio >= 100 else "%.1f" % ratio if ratio >= 1 else "%.2f" % ratio


def peer_time(cell):
    """A peer's time column: ms, '*' when taken from its Hessian, '^' for a single call, or the skip."""
    if cell is None:
        return "n/a"
    if cell.skipped:
        return "skip (%s)" % cell.skipped
    return fmt_ms(cell.median) + ("*" if cell.from_hessian else "") + ("^" if len(cell.times) == 1 else "")


def peer_ratio(cell, derive_seconds):
    """peer / derive; '~' marks a ratio from a skipped cell's estimate."""
    if cell is None or (cell.skipped and cell.estimate_s is None):
        return "—"
    if cell.skipped:
        return "~" + fmt_ratio(cell.estimate_s / derive_seconds)
    return fmt_ratio(cell.median / derive_seconds)


def table(rows, peer_names):
    """The aligned plain-text table, one line per row."""
    header = ["problem", "W", "kernel", "loss", "derive (ms)", "torch.func (ms)", "JAX (ms)",
              "JAX compile (s)", "torch/derive", "JAX/derive", "derive peak MiB", "agree (max rel err)"]
    lines = [header]
    for row in rows:
        d = row.cells["derive"]
        torch_cell = row.cells.get("torch.func") if "torch.func" in peer_names else None
        jax_cell = row.cells.get("JAX") if "JAX" in peer_names else None
        compile_s = "—" if jax_cell is None or jax_cell.compile_s is None else "%.2f" % jax_cell.compile_s
        agree = "—" if row.error is None else "%.1e" % row.error
        if row.checked_against and row.checked_against not in peer_names:
            agree += " (%s)" % row.checked_against
        if not row.ok:
            agree += "  FAIL"
        lines.append([row.problem.name, str(row.problem.n_params), row.kernel, row.loss,
                      fmt_ms(d.median) + ("^" if len(d.times) == 1 else ""),
                      peer_time(torch_cell), peer_time(jax_cell), compile_s,
                      peer_ratio(torch_cell, d.median), peer_ratio(jax_cell, d.median),
                      "%.1f" % d.peak_mib, agree])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 2, 3, 11}
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def bound_seconds(problem, rate):
    """The issue's bound on the exact Hessian: N·W·(W+1) flops at the measured GEMM rate."""
    W = problem.n_params
    return problem.N * W * (W + 1) / rate


def bound_lines(rows, rate):
    lines = []
    for problem in unique(row.problem for row in rows):
        hessians = [r for r in rows if r.problem == problem and r.kernel == "hessian"]
        if not hessians:
            continue
        bound = bound_seconds(problem, rate)
        parts = ["%s %s ms = %.1f× bound" % (r.loss, fmt_ms(r.cells["derive"].median),
                                            r.cells["derive"].median / bound) for r in hessians]
        lines.append("%-8s N=%d W=%d: bound N·W·(W+1)/rate = %s ms; derive Hessian: %s"
                     % (problem.name, problem.N, problem.n_params, fmt_ms(bound), "; ".join(parts)))
    return lines


def unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


# --- the targets ------------------------------------------------------------------------------

TARGETS = (
    "Hessian ≥10× faster than the faster peer",
    "Hessian within 3× of the bound",
    "gradient faster than JAX (≥5× on tiny, small)",
    "HVP faster than JAX (≥5× on tiny, small)",
    "HVP ≤ 2.5× derive's gradient",
    "diagonal ≥20× faster than derive's Hessian",
)


def target_lines(rows, rate, paired=None, paired_peer=None):
    """PASS/MISS for each of the issue's performance targets that this run measured, by target. The HVP's
    cost relative to the gradient is the median ratio of ``paired`` ((problem, loss) -> ratios of
    alternating pairs) where it holds the case, else the ratio of the two cells' medians; likewise a
    comparison with a peer uses ``paired_peer`` ((problem, loss, kernel) -> (peer, peer/derive ratios))
    where it holds that row and peer."""
    paired, paired_peer = paired or {}, paired_peer or {}
    find = {(r.problem.name, r.loss, r.kernel): r for r in rows}
    verdicts = []                    # (target index, row, ok, measured value as text)

    def derive_seconds(name, loss, kernel):
        row = find.get((name, loss, kernel))
        return row.cells["derive"].median if row else None

    def versus(row, peer, cell_ratio):
        """(ratio, text): the paired median where ``peer`` was paired with derive on ``row``, else the cells'."""
        pair = paired_peer.get((row.problem.name, row.loss, row.kernel))
        if pair is None or pair[0] != peer:
            return cell_ratio, ""
        ratio = float(np.median(pair[1]))
        return ratio, "; median of %d alternating pairs, the cells' medians give %.2f×" % (len(pair[1]), cell_ratio)

    for (name, loss, kernel), row in find.items():
        d = row.cells["derive"].median
        peers = {n: c for n, c in row.cells.items() if n != "derive" and _seconds(c) is not None}
        if kernel == "hessian" and peers:
            best, cell = min(peers.items(), key=lambda item: _seconds(item[1]))
            ratio, paired_text = versus(row, best, _seconds(cell) / d)
            verdicts.append((0, row, ratio >= 10, "%s%.1f× (vs %s%s%s)" % (
                "~" if cell.skipped else "", ratio, best, ", estimated" if cell.skipped else "", paired_text)))
        if kernel == "hessian" and name in ("medium", "large", "deep"):
            ratio = d / bound_seconds(row.problem, rate)
            verdicts.append((1, row, ratio <= 3, "%.1f× the bound" % ratio))
        if kernel in ("gradient", "hvp") and "JAX" in peers:
            need = 5 if name in ("tiny", "small") else 1
            ratio, paired_text = versus(row, "JAX", peers["JAX"].median / d)
            verdicts.append((2 if kernel == "gradient" else 3, row, ratio > need if need == 1 else ratio >= need,
                             "%.2f× (need %s%s)" % (ratio, "≥5×" if need == 5 else ">1×", paired_text)))
        if kernel == "hvp" and name in HVP_RATIO_PROBLEMS and derive_seconds(name, loss, "gradient"):
            cells = d / derive_seconds(name, loss, "gradient")
            if (name, loss) in paired:
                ratio = float(np.median(paired[name, loss]))
                text = "%.2f× the gradient (median of %d alternating pairs; the cells' medians give %.2f×)" % (
                    ratio, len(paired[name, loss]), cells)
            else:
                ratio, text = cells, "%.2f× the gradient" % cells
            text += "; its multiply-adds: %.3f× the gradient's" % (
                row.problem.multiply_adds("hvp") / row.problem.multiply_adds("gradient"))
            verdicts.append((4, row, ratio <= 2.5, text))
        if kernel == "diagonal" and name == "large" and derive_seconds(name, loss, "hessian"):
            ratio = derive_seconds(name, loss, "hessian") / d
            verdicts.append((5, row, ratio >= 20, "%.0f× faster" % ratio))
    width = max(map(len, TARGETS))
    return ["%s  %s  %-8s %-3s  %s" % ("PASS" if ok else "MISS", TARGETS[i].ljust(width), row.problem.name,
                                        row.loss, text)
            for i, row, ok, text in sorted(verdicts, key=lambda v: v[0])]


def _seconds(cell):
    """A peer cell's measured seconds, or its estimate where it was skipped."""
    return cell.median if cell.median is not None else cell.estimate_s


# --- main ---------------------------------------------------------------------------------------------

def parse_list(text, allowed, what):
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise SystemExit("unknown %s: %s (choose from %s)" % (what, ", ".join(unknown), ", ".join(allowed)))
    return [item for item in allowed if item in items]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny, small, medium (+ deep: gradient and HVP), fewer repetitions; < 2 min")
    parser.add_argument("--problems", help="comma-separated problem names (default: all)")
    parser.add_argument("--kernels", default=",".join(KERNELS), help="default: %(default)s")
    parser.add_argument("--losses", default=",".join(LOSSES), help="default: %(default)s")
    parser.add_argument("--skip-peers", default="", help="comma-separated: torch, jax")
    parser.add_argument("--json", metavar="PATH", help="save the raw results as JSON")
    args = parser.parse_args(argv)
    args.kernels = parse_list(args.kernels, KERNELS, "kernel")
    args.losses = parse_list(args.losses, LOSSES, "loss")
    args.problems = select(args.problems.split(",") if args.problems else None, args.quick)
    args.skip_peers = parse_list(args.skip_peers, ("torch", "jax"), "peer")
    return args


def environment(peers, rate, budget, quick):
    """Versions, the machine, the derive build measured (its network kernel's file and time) and the rules."""
    from derive.kernels import load_network
    kernel_file = load_network().__file__
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "numpy": np.__version__, "derive_kernels": kernel_file,
            "derive_kernels_built": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(kernel_file))),
            "gemm_gflops": rate / 1e9, "mode": "quick" if quick else "full", "budget": budget.__dict__}
    for module in peers:
        info[module.NAME] = module.VERSION
    return info


def main(argv=None):
    args = parse_args(argv)
    budget = measure.QUICK if args.quick else measure.FULL
    peers, notes = load_peers(args.skip_peers)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    rate = measure.gemm_rate()
    info = environment(peers, rate, budget, args.quick)
    log("float64 GEMM (2000×2000, median of 5): %.1f GFLOP/s" % (rate / 1e9))
    bench = Benchmark(budget, rate, peers)
    bench.warm_up()
    for problem in args.problems:
        for loss in args.losses:
            bench.run_case(problem, loss, args.kernels)
    wall = time.perf_counter() - started
    info["load_average_1min"] = {"start": load_before, "end": os.getloadavg()[0]}

    peer_names = [module.NAME for module in peers]
    print("derive benchmark (%s mode): %s" % (info["mode"], ", ".join(
        "%s %s" % (k, info[k]) for k in ["python", "numpy"] + peer_names)))
    print("float64 GEMM rate (2000×2000 matmul, median of 5): %.1f GFLOP/s; %s CPUs; wall time %.0f s"
          % (rate / 1e9, info["cpus"], wall))
    print("derive kernels: %s (built %s); 1-min load average %.2f at start, %.2f at end"
          % (info["derive_kernels"], info["derive_kernels_built"], load_before, info["load_average_1min"]["end"]))
    for note in notes:
        print("note: " + note)
    print()
    print(table(bench.rows, peer_names))
    print()
    print("ms = median of the timed calls after a warm-up call (≥%d calls, ≥%.1f s in all; calls faster than"
          " that allows for %d samples are timed in batches, each sample a batch's mean); ^ = one call only"
          " (the first took ≥ %g s); * = the peer's diagonal is the diagonal of its full Hessian (torch.func"
          " and JAX have no cheaper exact diagonal), timed as that Hessian; skip (est. X s) = a peer cell whose"
          " estimate is over %g s%s; ~ = ratio from that estimate. JAX times exclude compilation (its own"
          " column). derive peak MiB = tracemalloc peak of NumPy/Python allocations in one call. agree ="
          " max|derive − peer| / max|peer| against the fastest peer that ran (≤ %g), or, where none formed the"
          " matrix, derive's matrix times v against the peer's matrix-free product (named)."
          % (budget.min_reps, budget.target, budget.max_reps, budget.single, budget.peer_limit,
             "" if budget.peer_max_params == float("inf") else
             "; skip (W > %d) = a peer Hessian skipped in --quick" % budget.peer_max_params, TOLERANCE))
    print()
    for line in bound_lines(bench.rows, rate):
        print(line)
    targets = target_lines(bench.rows, rate, bench.paired, bench.paired_peer)
    if targets:
        print("\nThe issue's targets (measured in this run):")
        for line in targets:
            print("  " + line)
    failures = [row for row in bench.rows if not row.ok]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": info, "wall_s": wall, "notes": notes,
                       "bound_seconds": {p.name: bound_seconds(p, rate) for p in args.problems},
                       "rows": [row.record() for row in bench.rows],
                       "hvp_over_gradient_pairs": [{"problem": name, "loss": loss, "ratios": ratios}
                                                   for (name, loss), ratios in bench.paired.items()],
                       "peer_over_derive_pairs": [{"problem": name, "loss": loss, "kernel": kernel, "peer": peer,
                                                   "ratios": ratios}
                                                  for (name, loss, kernel), (peer, ratios)
                                                  in bench.paired_peer.items()]},
                      f, indent=1)
    if failures:
        print("\nFAIL: %d result(s) disagree with the peers by more than %g:" % (len(failures), TOLERANCE))
        for row in failures:
            print("  FAIL %s %s %s: max rel err %.3g vs %s"
                  % (row.problem.name, row.loss, row.kernel, row.error, row.checked_against))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
