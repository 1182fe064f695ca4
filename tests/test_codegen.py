"""Code generation: derived equations lowered and printed, rendered through strict templates, and the
committed generated/ folder reproducible byte for byte."""
import os
import re

import jinja2
import numpy as np
import pytest
import sympy as sp

import derive
from derive import codegen, layers
from derive.errors import DerivationError
from derive.functions import h1, h2
from derive.notation import j, j2
from derive.printing import ccode
from derive.resources import resource_dir, write_atomically

GENERATED = resource_dir("generated")


def recorded_sympy_version(text):
    return re.search(r"with SymPy (\S+) from", text).group(1)


def test_generated_sources_are_reproduced_byte_for_byte():
    committed = (GENERATED / "network.pyx").read_text(encoding="utf-8")
    if recorded_sympy_version(committed) != sp.__version__:
        message = "generated/ was made with SymPy %s, this is %s" % (recorded_sympy_version(committed), sp.__version__)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install the version in constraints.txt)")
        pytest.skip(message)
    files = {**codegen.generated_sources(), **codegen.generated_documents()}
    stale = [name for name, text in files.items()
             if not (GENERATED / name).exists() or (GENERATED / name).read_text(encoding="utf-8") != text]
    assert not stale, "regenerate with `python -m derive.codegen`: %s differ" % stale
    committed_names = {p.name for p in GENERATED.iterdir() if p.suffix in (".pyx", ".tex", ".md")}
    assert committed_names == set(files)


def test_every_generated_source_has_a_provenance_header():
    for name, text in codegen.generated_sources().items():
        head = text.splitlines()[:6]
        assert any("generated, do not edit" in line for line in head), name
        assert any("SymPy %s" % sp.__version__ in line for line in head), name
        assert any(re.search(r"specification sha256: [0-9a-f]{64}", line) for line in head), name


def test_the_spec_hash_changes_with_the_activation():
    first = codegen.render_activation(derive.Activation.from_expression("tanh(a) + a", name="one"))
    second = codegen.render_activation(derive.Activation.from_expression("tanh(a) + 2*a", name="one"))
    hash_of = lambda text: re.search(r"sha256: (\w+)", text).group(1)
    assert hash_of(first) != hash_of(second)


def test_kernels_evaluate_the_derived_z_forms():
    # tanh: h' = 1 - z**2, h'' = -2 z (1 - z**2), found by derive.scalar, printed into the kernel
    source = codegen.render_activation(derive.ACTIVATIONS["tanh"])
    assert "const double z = derive_tanh(a);" in source
    kernel = source[source.index("static void derive_activation"):]
    assert "pow(z, 2)" in kernel and "cosh(a)" not in kernel


def test_tanh_helper_agrees_with_libm_to_a_few_ulp():
    # tanh prints as derive_tanh (its own expm1 polynomial, which vectorises): libm's values to 1e-15
    z, d1, _ = derive.load("tanh").evaluate(np.array(A_GRID))
    reference = np.tanh(np.array(A_GRID))
    assert np.all(np.abs(z - reference) <= 1e-15 * np.abs(reference))
    assert np.array_equal(np.signbit(z), np.signbit(reference))        # -0.0 stays -0.0
    assert np.all(np.abs(d1 - (1 - reference**2)) <= 1e-15)
    assert np.isnan(derive.load("tanh").evaluate(np.array([np.nan]))[0]).all()
    assert np.array_equal(derive.load("tanh").evaluate(np.array([np.inf, -np.inf]))[0], [1.0, -1.0])


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(float).eps, reason="needs an extended long double")
def test_tanh_helper_is_within_3_ulp_of_tanh_everywhere():
    # 2 million points over every range the polynomial's argument reduction distinguishes, against
    # tanh in 80-bit long double (64-bit mantissa): the largest error seen is 2.5 ulp
    rng = np.random.default_rng(20261204)
    a = np.concatenate([rng.uniform(-20.5, 20.5, 800_000), rng.uniform(-0.6, 0.6, 400_000),
                        rng.choice([-1, 1], 800_000) * 10.0 ** rng.uniform(-320, 1.4, 800_000),
                        np.arange(-60, 61) * np.log(2) / 2])       # the boundaries between values of k
    z = derive.load("tanh").evaluate(a)[0]
    reference = np.tanh(a.astype(np.longdouble))
    ulps = np.abs(z - reference) / np.spacing(np.abs(reference).astype(float))
    assert float(ulps.max()) <= 3.0, "%.2f ulp at a = %r" % (float(ulps.max()), a[np.argmax(ulps)])


A_GRID = [0.0, -0.0, 5e-324, -1e-300, 1e-17, -3e-9, 0.1, -0.5, 1.0, -2.5, 7.0, -19.9, 20.0, 20.1, -36.0, 800.0,
          -1e308] + list(np.linspace(-25, 25, 2001))


def test_layer_equations_are_lowered_from_the_derivation():
    equations = {eq.key: eq for eq in derive.derivation("tanh").equations}
    assert codegen.lower_layer_expression(equations["delta_hidden"].rhs) == "d1[j]*s[j]"
    assert codegen.lower_layer_expression(equations["R_z"].rhs) == "d1[j]*ra[j]"
    lowered = codegen.lower_layer_expression(equations["R_delta"].rhs)
    assert sorted(lowered.split(" + ")) == ["d1[j]*r[j]", "d1[j]*u[j]", "d2[j]*ra[j]*s[j]"]
    network = (GENERATED / "network.pyx").read_text(encoding="utf-8")
    for key in ("delta_hidden", "R_z", "R_delta", "M_hidden"):
        assert codegen.lower_layer_expression(equations[key].rhs) in network


def test_lowering_refuses_what_no_kernel_array_computes():
    LL, LN = layers.LL, layers.LN
    k = sp.Symbol("k", integer=True)
    with pytest.raises(DerivationError, match="sum"):
        codegen.lower_layer_expression(sp.Sum(LN.w[k, j] ** 2 * LN.delta[k], (k, 1, LN.size)))
    with pytest.raises(DerivationError, match="pre-activation"):
        codegen.lower_layer_expression(h1(LN.a[j]))
    with pytest.raises(DerivationError, match="no kernel array"):
        codegen.lower_layer_expression(h2(LL.a[j]) * LL.M[j, j2])


def test_the_printer_refuses_what_it_cannot_print_faithfully():
    a = sp.Symbol("a", real=True)
    for expr in (sp.DiracDelta(a), sp.Function("f")(a), sp.Derivative(sp.Function("f")(a), a),
                 sp.Sum(a, (sp.Symbol("i", integer=True), 1, 3))):
        with pytest.raises(DerivationError):
            ccode(expr)


def test_heaviside_prints_with_the_documented_value_at_zero():
    a = sp.Symbol("a", real=True)
    assert ccode(sp.Heaviside(a, 0)) == "((a) > 0 ? 1.0 : ((a) < 0 ? 0.0 : 0.0))"


def test_templates_are_strict_about_missing_variables():
    template = codegen._environment().get_template("activation.pyx.j2")
    with pytest.raises(jinja2.UndefinedError):
        template.render(name="x")


def test_generated_files_are_written_atomically(tmp_path):
    paths = [write_atomically(tmp_path / "x.pyx", "one"), write_atomically(tmp_path / "x.pyx", "two")]
    assert paths[0] == paths[1] and paths[0].read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["x.pyx"]
