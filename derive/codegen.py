"""Stage 4 — code generation: derived equations lowered to C expressions and rendered into Cython.

In:  an :class:`~derive.specification.Activation` (for an activation module), or the loss derivations and
     the generic layer equations (for the network module).
Out: Cython source text (``.pyx``), rendered from the jinja2 templates in ``templates/``; and
     :func:`write_generated`, which writes the sources and derivation documents of the built-ins into
     ``generated/`` atomically.

*Lowering* turns a derived per-unit equation into a pointwise expression over kernel arrays: each sum
over the next layer becomes the array a BLAS product computes (Σ_k w_kj δ_k → ``s[j]``), h'(a_j) and
h''(a_j) become ``d1[j]`` and ``d2[j]`` (what the activation kernel returned), and R{a_j} becomes
``ra[j]``. A sum or quantity the template does not provide is an error, never silently dropped.
"""
import hashlib
from pathlib import Path

import jinja2
import sympy as sp

from . import __version__, layers
from .derivation import Derivation, generic_equations
from .errors import DerivationError
from .functions import h1, h2
from .loss import derive_loss
from .notation import j, j2
from .printing import C_HELPERS, c_assignments, ccode
from .resources import resource_dir, write_atomically
from .limits import time_limit
from .scalar import derive_scalar
from .specification import ACTIVATIONS, LOSSES

LL, LN = layers.LL, layers.LN
_UNITS = sp.Symbol("n", integer=True)

_k, _m = sp.symbols("_k _m", integer=True)

#: The sums over the next layer that the kernels compute with BLAS, and the array each one lands in.
LAYER_SUMS = [
    (sp.Sum(LN.delta[_k] * LN.w[_k, j], (_k, 1, LN.size)), sp.IndexedBase("s")),        # W(l+1)^T delta(l+1)
    (sp.Sum(LN.delta[_k] * LN.v[_k, j], (_k, 1, LN.size)), sp.IndexedBase("u")),        # V(l+1)^T delta(l+1)
    (sp.Sum(LN.Rdelta[_k] * LN.w[_k, j], (_k, 1, LN.size)), sp.IndexedBase("r")),       # W(l+1)^T R{delta(l+1)}
    (sp.Sum(LN.w[_k, j] * sp.Sum(LN.M[_k, _m] * LN.w[_m, j2], (_m, 1, LN.size)), (_k, 1, LN.size)),
     sp.IndexedBase("P", shape=(_UNITS, _UNITS))),                                      # W(l+1)^T M(l+1) W(l+1)
    (sp.Sum(layers.DY_UP[sp.Symbol("k", integer=True), _k] * LN.w[_k, j], (_k, 1, LN.size)),
     sp.IndexedBase("g")),                                                              # (dy/da(l+1)) W(l+1)
    (sp.Sum(LN.M[_k, _k] * LN.w[_k, j] ** 2, (_k, 1, LN.size)), sp.IndexedBase("q")),   # diag M(l+1) (W∘W)(l+1)
]
LAYER_ARRAYS = {LL.Ra: sp.IndexedBase("ra")}
LAYER_INDICES = {j: sp.Symbol("j", integer=True), j2: sp.Symbol("jp", integer=True)}

k_, kp_ = sp.Symbol("k", integer=True), sp.Symbol("k'", integer=True)
LOSS_ARRAYS = {"a^{(L)}": sp.IndexedBase("a"), "y": sp.IndexedBase("y"), "t": sp.IndexedBase("t"),
               r"\mathcal{R}\{a^{(L)}\}": sp.IndexedBase("r")}
LOSS_INDICES = {k_: sp.Symbol("k", integer=True), kp_: sp.Symbol("kp", integer=True)}

#: The layer equations whose pointwise part the network kernels evaluate, by template name.
POINTWISE = {"delta_hidden": "delta_hidden", "r_z": "R_z", "r_delta": "R_delta", "m_hidden": "M_hidden",
             "jacobian_backprop": "jacobian_backprop", "becker_lecun": "diag_becker_lecun"}


def lower_layer_expression(expr):
    """A layer equation's right-hand side as C over the kernel arrays (see the module docstring)."""
    derivatives = {h1: sp.IndexedBase("d1"), h2: sp.IndexedBase("d2")}

    def walk(e):
        if isinstance(e, sp.Sum):
            return _kernel_sum(e)
        if type(e) in derivatives:
            arg = e.args[0]
            if not (isinstance(arg, sp.Indexed) and arg.base == LL.a):
                raise DerivationError("h' or h'' of %s is not a pre-activation of the layer" % arg)
            return derivatives[type(e)][arg.indices]
        if isinstance(e, sp.Indexed):
            if e.base not in LAYER_ARRAYS:
                raise DerivationError("no kernel array holds %s" % e)
            return LAYER_ARRAYS[e.base][e.indices]
        if not e.args:
            return e
        return e.func(*[walk(a) for a in e.args])

    return ccode(walk(expr).xreplace(LAYER_INDICES))


def _kernel_sum(s):
    """The kernel array entry that holds the sum ``s`` (matched up to the names of its bound indices)."""
    for pattern, array in LAYER_SUMS:
        if _canonical(s) == _canonical(pattern):
            return array[tuple(q for q in (j, j2) if q in pattern.free_symbols)]
    raise DerivationError("no kernel array computes the sum %s" % s)


def _canonical(expr, depth=0):
    """``expr`` with the bound index of each sum renamed by its nesting depth."""
    if isinstance(expr, sp.Sum):
        (index, lower, upper), = expr.limits
        bound = sp.Symbol("_bound%d" % depth, integer=True)
        return sp.Sum(_canonical(expr.function.xreplace({index: bound}), depth + 1), (bound, lower, upper))
    if not expr.args:
        return expr
    return expr.func(*[_canonical(a, depth) for a in expr.args])


def lower_loss_expression(expr):
    """An output-layer expression (derive.loss kernel form) as C over a[k], y[k], y[kp], t[k], r[k] (R{a})."""
    def rename(e):
        name = e.base.label.name
        if name not in LOSS_ARRAYS:
            raise DerivationError("no kernel array holds %s" % e)
        return LOSS_ARRAYS[name][e.indices]

    expr = expr.replace(lambda e: isinstance(e, sp.Indexed), rename)
    return ccode(expr.xreplace(LOSS_INDICES))


# --- rendering ------------------------------------------------------------------------------------


def _environment():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["pyrepr"] = repr
    return env


def _provenance(template, spec, subject):
    return {"derive_version": __version__, "sympy_version": sp.__version__, "template": template,
            "spec_hash": hashlib.sha256(spec.encode()).hexdigest(), "subject": subject}


def render_activation(activation):
    """The Cython source of the kernel module of ``activation`` (templates/activation.pyx.j2)."""
    scalar = derive_scalar(activation)
    with time_limit("printing the kernel of activation %r" % activation.name):
        h_temporaries, (h_code,) = c_assignments([scalar.h], "h_")
        d_temporaries, (d1_code, d2_code) = c_assignments([scalar.kernel_d1, scalar.kernel_d2], "d_")
    spec = "activation %s\n%s" % (activation.name, sp.srepr(activation.expr))
    return _environment().get_template("activation.pyx.j2").render(
        provenance=_provenance("activation.pyx.j2", spec, "activation %s: h(a) = %s"
                               % (activation.name, _one_line(activation.expression or str(activation.expr)))),
        name=activation.name, expression=activation.expression or str(activation.expr),
        c_helpers=C_HELPERS.strip(), h_temporaries=h_temporaries, h=h_code,
        d_temporaries=d_temporaries, d1=d1_code, d2=d2_code)


def _one_line(text):
    return " ".join(text.split())


def render_network():
    """The Cython source of the network kernels (templates/network.pyx.j2), for every loss."""
    equations = {eq.key: eq for eq in generic_equations()}
    pointwise = {}
    for name, key in POINTWISE.items():
        eq = equations[key]
        pointwise[name] = {"label": eq.label, "description": _ascii(eq.description),
                           "code": lower_layer_expression(eq.rhs)}
    losses = []
    for name in LOSSES:
        output = derive_loss(name)
        forms = {key: lower_loss_expression(value) for key, value in output.kernel.items()}
        losses.append({"name": name, "uses": output.uses, "y": forms["y"], "e": forms["e"],
                       "delta": forms["delta"], "lam": forms["lambda"], "jacobian": forms["jacobian"],
                       "jacobian_uses": output.jacobian_uses,
                       "r_delta": forms["r_delta"], "r_uses": output.r_uses,
                       "r_sums": [(str(sym), lower_loss_expression(summand)) for sym, summand in output.r_sums],
                       "factor": forms["lambda_factor"], "factor_sign": forms["lambda_sign"],
                       "factor_uses": output.factor_uses})
    spec = repr(sorted(pointwise.items())) + repr(losses)
    return _environment().get_template("network.pyx.j2").render(
        provenance=_provenance("network.pyx.j2", spec, "network kernels for the losses " + ", ".join(LOSSES)),
        loss_names=list(LOSSES), losses=losses, pointwise=pointwise, c_helpers=C_HELPERS.strip())


def _ascii(text):
    """Descriptions go into C comments of generated files: keep them ASCII."""
    replacements = {"δ": "delta", "Λ": "Lambda", "⁽ᴸ⁾": "(L)", "⁽ˡ⁾": "(l)", "ᵀ": "^T", "→": "->", "−": "-",
                    "–": "-", "—": "-", "Σ": "sum", "∂": "d", "′": "'", "≃": "~"}
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text.encode("ascii", "replace").decode()


# --- generated/ ----------------------------------------------------------------------------------


def generated_sources():
    """{file name: text} of every Cython source committed under generated/."""
    files = {"network.pyx": render_network()}
    for name, activation in ACTIVATIONS.items():
        files[name + ".pyx"] = render_activation(activation)
    return files


def generated_documents():
    """{file name: text} of every derivation document committed under generated/."""
    files = {}
    for name in ACTIVATIONS:
        derivation = Derivation(name, "sse")
        files[name + ".tex"] = derivation.latex()
        files[name + ".md"] = derivation.markdown()
    return files


def write_generated(directory=None):
    """Regenerate generated/ (sources and documents); returns the paths written."""
    directory = Path(directory) if directory is not None else resource_dir("generated")
    files = {**generated_sources(), **generated_documents()}
    return [write_atomically(directory / name, text) for name, text in sorted(files.items())]


if __name__ == "__main__":
    for written in write_generated():
        print(written)
