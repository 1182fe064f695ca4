"""The compiled kernels, end to end: derive.MLP's error, gradient, Hessian and Hessian-vector product.

For every built-in activation × loss × depth L = 1, 2, 3 (with biases), and for activations given only
as expressions (compiled on demand): the gradient matches central differences of the error (PRML 5.69),
the Hessian matches central differences of the gradient (5.91) and is symmetric, and hvp(v) equals
hessian @ v. The references here are written independently of derive's own `check` module.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import derive
from conftest import random_problem, rel

SIZES = {1: [3, 2], 2: [3, 4, 2], 3: [2, 3, 4, 3]}
SAMPLES = 5


def central_difference_rows(f, w, eps):
    rows = []
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = eps
        rows.append((np.asarray(f(w + e)) - np.asarray(f(w - e))) / (2 * eps))
    return np.array(rows)


def assert_kernels_match_finite_differences(net, seed=0):
    w, X, T = random_problem(net, seed=seed)
    g = net.gradient(w, X, T)
    assert rel(g, central_difference_rows(lambda u: net.error(u, X, T), w, 1e-5)) <= 1e-6
    H = net.hessian(w, X, T)
    assert H.shape == (net.n_params, net.n_params)
    assert rel(H, central_difference_rows(lambda u: net.gradient(u, X, T), w, 1e-5)) <= 1e-6
    assert np.array_equal(H, H.T)
    v = np.random.default_rng(seed + 1).normal(size=net.n_params)
    assert rel(net.hvp(w, X, T, v), H @ v) <= 1e-10


@pytest.mark.parametrize("depth", sorted(SIZES))
@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
@pytest.mark.parametrize("activation", sorted(derive.ACTIVATIONS))
def test_builtin_kernels_match_finite_differences(activation, loss, depth):
    assert_kernels_match_finite_differences(derive.MLP(SIZES[depth], activation=activation, loss=loss))


@pytest.mark.parametrize("expression", ["a*tanh(log(1 + exp(a)))", "sin(a) + a**3/10 - atan(a)"])
@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
def test_user_expressions_compile_on_demand_and_match(expression, loss, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DERIVE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    assert_kernels_match_finite_differences(derive.MLP([3, 4, 3, 2], activation=expression, loss=loss))


def test_second_use_of_an_expression_loads_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_CACHE_DIR", str(tmp_path))
    messages = []
    derive.load("a/(1 + Abs(a))", progress=messages.append)
    assert any("compiling" in m for m in messages)
    import derive.build as build
    monkeypatch.setattr(build, "_build", lambda *args: pytest.fail("compiled again"))
    again = []
    module = derive.load("a/(1 + Abs(a))", progress=again.append)
    assert again == [] and module.capsule() is not None


def test_mixed_activations_per_layer():
    net = derive.MLP([3, 4, 3, 2], activation=["tanh", "a*sigmoid(a)"], loss="ce")
    assert [a.name for a in net.activations][0] == "tanh"
    assert_kernels_match_finite_differences(net)


def test_forward_matches_a_numpy_network():
    net = derive.MLP([3, 5, 4, 2], activation="tanh", loss="ce")
    w, X, _ = random_problem(net)
    z = X
    layers = net.unflatten(w)
    for W, b in layers[:-1]:
        z = np.tanh(z @ W.T + b)
    a = z @ layers[-1][0].T + layers[-1][1]
    y = np.exp(a - a.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    assert np.allclose(net.forward(w, X), y, rtol=1e-13, atol=1e-15)


def test_error_is_a_sum_over_samples():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    w, X, T = random_problem(net)
    assert net.error(w, X, T) == pytest.approx(sum(net.error(w, X[n:n + 1], T[n:n + 1]) for n in range(SAMPLES)))
    y = net.forward(w, X)
    assert net.error(w, X, T) == pytest.approx(0.5 * np.sum((y - T) ** 2), rel=1e-13)


def test_parameter_layout_is_weights_row_major_then_bias():
    net = derive.MLP([2, 3, 1], activation="tanh", loss="sse")
    w = np.arange(net.n_params, dtype=float)
    (W1, b1), (W2, b2) = net.unflatten(w)
    assert W1.tolist() == [[0, 1], [2, 3], [4, 5]] and b1.tolist() == [6, 7, 8]
    assert W2.tolist() == [[9, 10, 11]] and b2.tolist() == [12]
    assert net.n_params == 13 and net.init(seed=0).dtype == np.float64


@pytest.mark.parametrize("method", ["forward", "error", "gradient", "hessian", "hvp"])
def test_wrong_arguments_raise_errors_naming_the_argument(method):
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    w, X, T = random_problem(net)
    v = np.ones(net.n_params)

    def call(w=w, X=X, T=T, v=v):
        args = {"forward": (w, X), "error": (w, X, T), "gradient": (w, X, T), "hessian": (w, X, T),
                "hvp": (w, X, T, v)}[method]
        return getattr(net, method)(*args)

    cases = [(dict(w=w[:-1]), ValueError, "w"), (dict(w=w.astype(complex)), TypeError, "w"),
             (dict(X=X[:, :2]), ValueError, "X"), (dict(X=X.ravel()), ValueError, "X"),
             (dict(X=X[:0]), ValueError, "X"), (dict(X=np.where(X > 0, np.nan, X)), ValueError, "X"),
             (dict(X=X.astype(str)), TypeError, "X"), (dict(w=None), TypeError, "w")]
    if method != "forward":
        cases += [(dict(T=T[:2]), ValueError, "T"), (dict(T=T[:, :1]), ValueError, "T"),
                  (dict(T=np.full_like(T, np.inf)), ValueError, "T")]
    if method == "hvp":
        cases += [(dict(v=v[:3]), ValueError, "v"), (dict(v=v.astype(bool)), TypeError, "v")]
    for arguments, error, name in cases:
        with pytest.raises(error, match=r"\b%s\b" % name):
            call(**arguments)


def test_float32_and_integer_inputs_are_converted_to_float64():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    w, X, T = random_problem(net)
    X32 = X.astype(np.float32)
    assert net.error(w, X32, T) == net.error(w, X32.astype(np.float64), T)
    assert np.isfinite(net.error(w, np.ones((2, 3), dtype=int), np.zeros((2, 2), dtype=int)))


def test_a_masked_array_is_refused_rather_than_its_mask_ignored():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    w, X, T = random_problem(net)
    masked = np.ma.masked_greater(X, 0.5)
    with pytest.raises(TypeError, match="X is a masked array"):
        net.error(w, masked, T)


def test_read_only_and_non_contiguous_arrays_are_accepted():
    net = derive.MLP([3, 4, 2], activation="tanh", loss="sse")
    w, X, T = random_problem(net)
    X_ro = X.copy()
    X_ro.setflags(write=False)
    wide = np.zeros((SAMPLES, 6))
    wide[:, ::2] = X
    assert net.error(w, X_ro, T) == net.error(w, wide[:, ::2], T) == net.error(w, X, T)


def test_bad_network_specifications_are_refused():
    with pytest.raises(derive.SpecificationError, match="sizes"):
        derive.MLP([3], activation="tanh")
    for sizes in ([True, 2], [3, np.True_], {3: 0, 2: 0}, {3, 2}, "32", 3, [3.0, 2]):
        with pytest.raises(TypeError, match="sizes must be a sequence of integers"):
            derive.MLP(sizes, activation="tanh")
    with pytest.raises(derive.SpecificationError, match="layer sizes above"):
        derive.MLP([3, 2**62], activation="tanh")
    with pytest.raises(derive.SpecificationError, match="loss"):
        derive.MLP([3, 2], loss="mse")
    with pytest.raises(derive.SpecificationError, match="activations"):
        derive.MLP([3, 4, 2], activation=["tanh", "tanh"])
    with pytest.raises(derive.ExpressionError):
        derive.MLP([3, 4, 2], activation="__import__('os').system('x')")


def test_hessian_assembled_in_chunks_of_samples_is_the_same():
    net = derive.MLP([3, 4, 5, 2], activation="tanh", loss="ce")
    w, X, T = random_problem(net, seed=3)
    whole = net.hessian(w, X, T)
    for chunk in (1, 2, 3):
        assert rel(net._plan.hessian(w, X, T, chunk), whole) <= 1e-13


# --- first-order passes in threads -------------------------------------------------------------------


@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
@pytest.mark.parametrize("activation", ["tanh", "softplus", "sin"])
def test_threaded_blocks_match_finite_differences(activation, loss, threaded_blocks):
    assert_kernels_match_finite_differences(derive.MLP(SIZES[3], activation=activation, loss=loss))


def first_order_results(net, w, X, T, v):
    return net.error(w, X, T), net.gradient(w, X, T), net.hvp(w, X, T, v), net.jacobian(w, X)


def assert_first_order_results_agree(results, reference):
    """(error, gradient, hvp, jacobian) equal to 1e-13, relative."""
    assert abs(results[0] - reference[0]) <= 1e-13 * abs(reference[0])
    for value, expected in zip(results[1:], reference[1:]):
        assert rel(value, expected) <= 1e-13


def with_each_setting(setter, values, compute):
    """[compute() with setter(value) in force, for each of ``values``]: ``setter`` is one of the kernel
    module's _set_* hooks (it returns the value it replaces), restored to its old value afterwards."""
    old = setter(values[0])
    try:
        computed = []
        for value in values:
            setter(value)
            computed.append(compute())
        return computed
    finally:
        setter(old)


@pytest.mark.parametrize("N", [2, 3, 7, 64])
def test_threaded_blocks_agree_with_one_block(N, threaded_blocks, hvp_passes):
    net = derive.MLP([5, 6, 4, 3], activation="tanh", loss="ce")
    rng = np.random.default_rng(N)
    w, v = rng.normal(size=net.n_params), rng.normal(size=net.n_params)
    X, T = rng.normal(size=(N, 5)), rng.uniform(size=(N, 3))
    threaded = first_order_results(net, w, X, T, v)
    threaded_blocks._set_part_work(1 << 62)
    assert_first_order_results_agree(threaded, first_order_results(net, w, X, T, v))


THREE_BLOCKS_SCRIPT = """
import numpy as np, derive
from derive.kernels import load_network
network = load_network()
assert network.threading_info()["threads"] == 3, network.threading_info()
net = derive.MLP([5, 6, 4, 3], activation="tanh", loss="ce")
rng = np.random.default_rng(5)
w, v = rng.normal(size=net.n_params), rng.normal(size=net.n_params)
X, T = rng.normal(size=(10, 5)), rng.uniform(size=(10, 3))
def results():
    return [np.atleast_1d(net.error(w, X, T)), net.gradient(w, X, T), net.hvp(w, X, T, v), net.jacobian(w, X).ravel()]
network._set_part_work(1)
three = results()
network._set_part_work(1 << 62)
one = results()
print(max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(three, one)))
"""


def test_three_threaded_blocks_agree_with_one_block(threaded_blocks):
    """With three OpenMP threads (more than the CI machine's cores) the samples run in three blocks, each
    with its own working memory and sum; they must add up to what one block gives."""
    env = dict(os.environ, OMP_NUM_THREADS="3")
    done = subprocess.run([sys.executable, "-c", THREE_BLOCKS_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) <= 1e-13


@pytest.mark.parametrize("loss", sorted(derive.LOSSES))
def test_samples_taken_in_tiles_of_one_agree_with_one_tile(loss, hvp_passes):
    """A block's samples run in tiles (sized to the core's cache) whose sums are added; tiles of one
    sample must give what one tile of all samples gives."""
    from derive.kernels import load_network
    network = load_network()
    net = derive.MLP([5, 6, 4, 3], activation="softplus", loss=loss)
    w, X, T = random_problem(net, seed=9, samples=11)
    v = np.random.default_rng(9).normal(size=net.n_params)
    whole = first_order_results(net, w, X, T, v)
    old, old_lanes = network._set_tile(1, 1), network._set_lanes(hvp_passes, 1)
    try:
        tiled = first_order_results(net, w, X, T, v)
    finally:
        network._set_tile(*old)
        network._set_lanes(*old_lanes)
    assert_first_order_results_agree(tiled, whole)


@pytest.mark.parametrize("N", [1, 8, 13, 150])
@pytest.mark.parametrize("sizes, activation, loss", [
    ([3, 2], "tanh", "sse"), ([4, 7, 3], "relu", "ce"), ([5, 9, 3], "sigmoid", "bce"), ([2, 3, 4, 3], "sin", "ce"),
    ([3, 5, 1, 6, 2], "leaky_relu", "sse"), ([6, 11, 13, 4], "softplus", "bce"), ([2, 17, 1], "gelu", "ce")])
def test_hvp_with_samples_in_lanes_agrees_with_the_blas_passes(sizes, activation, loss, N):
    """A narrow network's H v runs with 8 samples per vector (derive_lanes): with full and partial groups of
    8, several tiles (150 samples), and tiles of one and of three samples, it must equal the BLAS passes'
    H v to rounding, and H v with H from the Hessian kernel."""
    from derive.kernels import load_network
    network = load_network()
    net = derive.MLP(sizes, activation=activation, loss=loss)
    w, X, T = random_problem(net, seed=N + len(sizes), samples=N)
    v = np.random.default_rng(N).normal(size=net.n_params)
    expected = net.hessian(w, X, T) @ v
    *lanes, blas = with_each_setting(lambda setting: network._set_lanes(*setting),
                                     [(1 << 40, 128), (1 << 40, 1), (1 << 40, 3), (0, 128)],
                                     lambda: net.hvp(w, X, T, v))
    for hv in lanes:
        assert rel(hv, blas) <= 1e-13
        assert rel(hv, expected) <= 1e-10


def test_hvp_in_lanes_of_a_partial_group_computes_nothing_outside_the_samples(tmp_path_factory, monkeypatch):
    """Lanes past a group's last sample must not meet an activation where it is undefined: sqrt(a) is
    defined at every sample's a = x - 1/2 but not at a = -1/2 (an input of 0); H v must be the Hessian's."""
    monkeypatch.setenv("DERIVE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    net = derive.MLP([1, 1, 1], activation="sqrt(a)", loss="sse")
    w, v = np.array([1.0, -0.5, 1.0, 0.0]), np.array([0.3, -1.0, 0.7, 2.0])
    X, T = np.array([[1.0], [2.0], [3.0]]), np.array([[0.5], [-1.0], [2.0]])
    from derive.kernels import load_network
    network = load_network()
    [hv] = with_each_setting(lambda setting: network._set_lanes(*setting), [(1 << 40, 128)],
                             lambda: net.hvp(w, X, T, v))
    assert rel(hv, net.hessian(w, X, T) @ v) <= 1e-12


@pytest.mark.parametrize("sizes, loss", [([5, 6, 4, 3], "ce"), ([7, 2, 9], "sse"), ([3, 5, 6, 4, 2], "bce")])
def test_forward_products_on_transposed_weights_agree_with_the_weights_themselves(sizes, loss, hvp_passes):
    """Small networks' forward and R-forward products read a transposed copy of the weights (see
    Plan._transposed); both ways must give the same error, gradient, H v and Jacobian, and match
    finite differences."""
    from derive.kernels import load_network
    network = load_network()
    net = derive.MLP(sizes, activation="sin", loss=loss)
    w, X, T = random_problem(net, seed=len(sizes), samples=13)
    v = np.random.default_rng(len(sizes)).normal(size=net.n_params)

    def results():
        computed = first_order_results(net, w, X, T, v)
        assert_kernels_match_finite_differences(net)
        return computed

    transposed, untransposed = with_each_setting(network._set_small_product, (1 << 62, 0), results)
    assert_first_order_results_agree(transposed, untransposed)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (4, 8, 3), (5, 9, 7), (37, 3, 13), (3, 17, 64), (9, 12, 5),
                                     (20, 4, 6), (11, 16, 9), (12, 8, 4), (128, 32, 10), (7, 100, 512)])
def test_small_product_is_the_matrix_product(m, n, k, ta):
    """The products that bypass BLAS (see gemm in the network template): C = op(A) B and C += op(A) B
    against NumPy, for shapes with partial register tiles in both directions."""
    from derive.kernels import load_network
    network = load_network()
    rng = np.random.default_rng(m * n * k)
    A = rng.normal(size=(k, m) if ta else (m, k))
    B, C0 = rng.normal(size=(k, n)), rng.normal(size=(m, n))
    expected = (A.T if ta else A) @ B
    C = np.full((m, n), np.nan)
    network._small_product(ta, A, B, C, False)
    assert rel(C, expected) <= 1e-14
    C = C0.copy()
    network._small_product(ta, A, B, C, True)
    assert rel(C, C0 + expected) <= 1e-14


def test_small_product_refuses_shapes_that_do_not_agree():
    from derive.kernels import load_network
    network = load_network()
    with pytest.raises(ValueError, match="shapes"):
        network._small_product(False, np.ones((3, 4)), np.ones((5, 2)), np.empty((3, 2)), False)
    with pytest.raises(ValueError, match="k must be"):
        network._small_product(False, np.ones((3, 600)), np.ones((600, 2)), np.empty((3, 2)), False)


@pytest.mark.parametrize("sizes, loss", [([9, 13, 7, 3], "ce"), ([4, 17, 2], "sse"), ([3, 5, 6, 4, 2], "bce")])
def test_kernels_agree_with_every_product_through_blas(sizes, loss, hvp_passes):
    """Small products bypass BLAS (derive_small_product); with every product sent to BLAS instead,
    error, gradient, H v, Jacobian, Hessian and its diagonal must be the same, and match finite
    differences either way."""
    from derive.kernels import load_network
    network = load_network()
    net = derive.MLP(sizes, activation="tanh", loss=loss)
    w, X, T = random_problem(net, seed=len(sizes), samples=37)
    v = np.random.default_rng(len(sizes)).normal(size=net.n_params)

    def results():
        computed = first_order_results(net, w, X, T, v) + (net.hessian(w, X, T), net.hessian_diagonal(w, X, T))
        assert_kernels_match_finite_differences(net)
        return computed

    own, blas = with_each_setting(network._set_small_gemm, (1 << 62, 0), results)
    assert_first_order_results_agree(own[:4], blas[:4])
    assert rel(own[4], blas[4]) <= 1e-13 and rel(own[5], blas[5]) <= 1e-13


@pytest.mark.parametrize("sizes, loss", [([6, 9, 7, 3], "ce"), ([4, 12, 2], "sse"), ([3, 5, 6, 4, 2], "bce")])
def test_hessian_with_products_and_scatters_shared_among_threads_matches_serial(sizes, loss, threaded_blocks):
    """Every product and scatter of the one-matrix assembly split among the threads (normally only
    those of large networks are), against the serial assembly and finite differences."""
    net = derive.MLP(sizes, activation="softplus", loss=loss)
    w, X, T = random_problem(net, seed=len(sizes), samples=23)
    old_split = threaded_blocks._set_hessian_split(0)
    old_work = threaded_blocks._set_shared_work(1, 1)
    try:
        shared, diagonal = net.hessian(w, X, T), net.hessian_diagonal(w, X, T)
        threaded_blocks._set_shared_work(1 << 62, 1 << 62)
        serial = net.hessian(w, X, T)
    finally:
        threaded_blocks._set_shared_work(*old_work)
        threaded_blocks._set_hessian_split(old_split)
    assert rel(shared, serial) <= 1e-13 and np.array_equal(shared, shared.T)
    assert rel(diagonal, np.diag(serial)) <= 1e-13
    assert rel(shared, central_difference_rows(lambda u: net.gradient(u, X, T), w, 1e-5)) <= 1e-6


def test_hessian_assembled_by_two_threads_matches_one_and_finite_differences(threaded_blocks):
    net = derive.MLP([10, 32, 3], activation="softplus", loss="ce")          # W = 451: split in two halves
    w, X, T = random_problem(net, seed=5, samples=64)
    split = net.hessian(w, X, T)
    old = threaded_blocks._set_hessian_split(0)
    try:
        single = net.hessian(w, X, T)
    finally:
        threaded_blocks._set_hessian_split(old)
    assert rel(split, single) <= 1e-13 and np.array_equal(split, split.T)
    assert rel(split, central_difference_rows(lambda u: net.gradient(u, X, T), w, 1e-5)) <= 1e-6
