"""The derivation of one activation with one loss: every equation, generic and specialised.

In:  an activation (name, expression string or :class:`~derive.specification.Activation`) and a loss.
Out: a :class:`Derivation` holding the scalar derivatives (:mod:`derive.scalar`), the output-layer
     equations of the loss (:mod:`derive.loss`), the layer equations with h generic
     (:mod:`derive.layers`), and the same layer equations specialised to this activation — h, h', h''
     replaced by their derived forms, in z = h(a) where such a form exists.

The same objects are rendered as LaTeX and Markdown (:mod:`derive.latex`) and lowered to code
(:mod:`derive.codegen`).
"""
from functools import lru_cache

import sympy as sp

from . import layers
from .expressions import A
from .functions import h, h1, h2
from .loss import derive_loss
from .scalar import Z, derive_scalar
from .specification import resolve_activation, resolve_loss


@lru_cache(maxsize=1)
def generic_equations():
    """Every layer equation with h undefined, in PRML order (computed once per process)."""
    return tuple(layers.forward_equations() + layers.backprop_equations() + layers.jacobian_equations()
                 + layers.diagonal_equations() + layers.outer_product_equations() + layers.inverse_equations()
                 + layers.finite_difference_equations() + layers.exact_equations()
                 + layers.cross_layer_equations() + layers.r_operator_equations())


class Derivation:
    """Everything derive derives for one activation and one loss.

    Attributes: ``activation``, ``loss``, ``scalar`` (h, h', h'' and z-forms), ``loss_equations``,
    ``equations`` (generic layer equations), ``specialised`` (the same, for this activation).
    """

    def __init__(self, activation, loss):
        self.activation = resolve_activation(activation)
        self.loss = resolve_loss(loss)
        self.scalar = derive_scalar(self.activation)
        self.output = derive_loss(self.loss.name)
        self.loss_equations = self.output.equations
        self.equations = generic_equations()
        self.specialised = tuple(eq.subs(self.specialise) for eq in self.equations)

    def specialise(self, expr):
        """``expr`` with the generic h, h', h'' of a unit replaced by this activation's derived forms.

        h'(a⁽ˡ⁾_j) becomes the z-form in z⁽ˡ⁾_j where one exists (1 − (z⁽ˡ⁾_j)² for tanh), else the form
        in a⁽ˡ⁾_j.
        """
        forms = {h: (self.scalar.h, None), h1: (self.scalar.d1, self.scalar.d1_z),
                 h2: (self.scalar.d2, self.scalar.d2_z)}

        def replace(call):
            in_a, in_z = forms[type(call)]
            arg = call.args[0]
            unit_output = _unit_output(arg)
            if in_z is not None and unit_output is not None:
                return in_z.subs(Z, unit_output)
            return in_a.subs(A, arg)

        return expr.replace(lambda e: type(e) in forms, replace)

    def equation(self, key, specialised=False):
        """The equation with ``key`` (generic, or specialised to this activation)."""
        for eq in (self.specialised if specialised else self.equations) + self.loss_equations:
            if eq.key == key:
                return eq
        raise KeyError("no equation %r; keys: %s" % (key, ", ".join(e.key for e in self.equations)))

    def latex(self):
        """The derivation document as a standalone LaTeX source (compiles with pdflatex)."""
        from .latex import render_latex
        return render_latex(self)

    def markdown(self):
        """The derivation document as Markdown with math that renders on GitHub."""
        from .latex import render_markdown
        return render_markdown(self)

    def _repr_latex_(self):
        from .latex import render_latex_fragment
        return render_latex_fragment(self)

    def _repr_markdown_(self):
        return self.markdown()

    def __repr__(self):
        return "<Derivation of %s with loss %s: %d equations>" % (
            self.activation.name, self.loss.name, len(self.equations) + len(self.loss_equations))


def _unit_output(arg):
    """z⁽ˡ⁾_j for the pre-activation a⁽ˡ⁾_j (same layer, same unit), or None for any other argument."""
    if isinstance(arg, sp.Indexed) and arg.base.name.startswith("a^"):
        return sp.IndexedBase(sp.Symbol("z" + arg.base.name[1:]))[arg.indices]
    return None


@lru_cache(maxsize=64)
def _cached(activation, loss):
    return Derivation(activation, loss)


def derivation(activation="tanh", loss="sse"):
    """The :class:`Derivation` of ``activation`` (a built-in name, an expression in ``a`` or an
    Activation) with ``loss`` ("sse", "bce" or "ce"); cached per activation and loss."""
    return _cached(resolve_activation(activation), resolve_loss(loss))
