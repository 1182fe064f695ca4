"""Equations as data: a derived SymPy equation with its PRML label, the unit every stage passes along.

The same :class:`Equation` objects feed the LaTeX renderer (:mod:`derive.latex`) and the code generator
(:mod:`derive.codegen`): nothing between the derivation and the emitted code is retyped.
"""
from dataclasses import dataclass, replace

import sympy as sp

from .calculus import rename_dummies


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs``, derived (or, for definitions, stated) in indexed per-unit form.

    label:        PRML's equation number ("5.56"); the L-layer recursions, which PRML does not number,
                  carry the number of the two-layer form they generalise with the suffix "L" ("5.56L").
    key:          a short identifier, unique in a derivation ("delta_hidden", "R_delta_hidden", ...).
    description:  one line saying what the equation is.
    section:      the PRML section it belongs to ("5.3.1 Backpropagation", ...).
    definition:   True for the model's definitions (5.48, 5.92, ...), False for derived results.
    """

    label: str
    key: str
    description: str
    lhs: sp.Expr
    rhs: sp.Expr
    section: str
    definition: bool = False

    def __post_init__(self):
        object.__setattr__(self, "rhs", rename_dummies(self.rhs, self.lhs.free_symbols))

    @property
    def eq(self):
        """The SymPy equation lhs = rhs (unevaluated)."""
        return sp.Eq(self.lhs, self.rhs, evaluate=False)

    def subs(self, substitutions):
        """The same equation with ``substitutions`` applied to both sides (e.g. a concrete h)."""
        return replace(self, lhs=_apply(self.lhs, substitutions), rhs=_apply(self.rhs, substitutions))

    def latex(self):
        """The equation as LaTeX (no delimiters, no tag)."""
        return "%s = %s" % (latex(self.lhs), latex(self.rhs))

    def markdown(self):
        """The equation as a GitHub Markdown block: its tag and description, then the math."""
        return "**(%s)** %s\n\n```math\n%s\n```\n" % (self.tag, self.description, self.latex())

    def _repr_markdown_(self):
        return self.markdown()

    @property
    def tag(self):
        """The tag shown in documents: "5.56", or "5.56, L layers" for an L-layer form."""
        return self.label[:-1] + ", L layers" if self.label.endswith("L") else self.label


def _apply(expr, substitutions):
    if callable(substitutions):
        return substitutions(expr)
    return expr.xreplace(substitutions) if isinstance(substitutions, dict) else expr.subs(substitutions)


def latex(expr):
    """LaTeX of ``expr`` in PRML's notation (:class:`derive.latex.DerivePrinter`)."""
    from .latex import print_latex  # derive.latex imports this module
    return print_latex(expr)
