"""Stage 3 — LaTeX: a derivation as a document.

In:  a :class:`~derive.derivation.Derivation`.
Out: LaTeX / Markdown text — a standalone LaTeX document (:func:`render_latex`), the same content as
     GitHub Markdown (:func:`render_markdown`) and a short fragment for Jupyter
     (:func:`render_latex_fragment`); :func:`write_documents` and :func:`compile_pdf` put them on disk.

Equations are printed by :class:`DerivePrinter`, SymPy's LaTeX printer in PRML's notation
(w⁽ˡ⁾_ji, ∂E_n/∂w, I_jj', R{·}). The text is deterministic: rendering the same derivation in any
process gives the same bytes, so the documents in ``generated/`` can be compared byte for byte.
"""
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import jinja2
import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE

from .equation import latex
from .errors import DeriveError
from .resources import resource_dir
from .scalar import is_smooth

# --- printing expressions ------------------------------------------------------------------------

R_OPERATOR = r"\mathcal{R}"
_SIMPLE_NAME = re.compile(r"(?:\\[A-Za-z]+|[A-Za-z])(?:\^\{[^{}]*\})?")
_SUBSCRIPTED_NAME = re.compile(r"(?P<stem>\\?[A-Za-z]+)_\{(?P<sub>[^{}]*)\}(?P<sup>\^\{[^{}]*\})?")
_R_NAME = re.compile(r"\\mathcal\{R\}\\\{(?P<inner>.*)\\\}")
_LETTER_INDEX = re.compile(r"[A-Za-z]'*")


class DerivePrinter(LatexPrinter):
    """SymPy's LaTeX printer in PRML's notation.

    * Indexed quantities as w^{(l)}_{ji} (indices without commas when each is one letter), the
      R-quantities as R{a^{(l)}_j} and quantities with a composite name as (∂y/∂a)_{kj};
    * Kronecker deltas as I_{jj'} (PRML 5.94);
    * unevaluated derivatives as ∂²E_n/∂w_r∂w_s, in the order the variables are given;
    * R(x) as R{x}.
    """

    _default_settings = {**LatexPrinter._default_settings, "long_frac_ratio": 3}

    def _indices(self, indices):
        printed = [self._print(index) for index in indices]
        separator = "" if all(_LETTER_INDEX.fullmatch(p) for p in printed) else ","
        return separator.join(printed)

    def _print_Indexed(self, expr):
        name = self._print(expr.base.label)
        indices = self._indices(expr.indices)
        r_quantity = _R_NAME.fullmatch(name)
        if r_quantity:
            return r"%s\lbrace %s\rbrace" % (R_OPERATOR, _subscripted(r_quantity.group("inner"), indices))
        return _subscripted(name, indices)

    def _print_KroneckerDelta(self, expr, exp=None):
        text = "I_{%s}" % self._indices(expr.args)
        return text if exp is None else "%s^{%s}" % (text, exp)

    def _print_Pow(self, expr):
        if isinstance(expr.base, sp.Indexed) and expr.exp.is_Integer and expr.exp > 0:
            base = self._print(expr.base)
            if not re.fullmatch(r"[A-Za-z]_\{[^{}]*\}", base):
                base = r"\left(%s\right)" % base
            return "%s^{%s}" % (base, self._print(expr.exp))
        return super()._print_Pow(expr)

    def _print_Derivative(self, expr):
        order = sum(count for _, count in expr.variable_count)
        partial = r"\partial" if order == 1 else r"\partial^{%d}" % order
        below = " ".join(r"\partial %s" % self._print(v if n == 1 else sp.Pow(v, n, evaluate=False))
                         for v, n in expr.variable_count)
        if expr.expr.is_Symbol:
            return r"\frac{%s %s}{%s}" % (partial, self._print(expr.expr), below)
        return r"\frac{%s}{%s} %s" % (partial, below, self.parenthesize(expr.expr, PRECEDENCE["Mul"]))

    def _print_Function(self, expr, exp=None):
        if expr.func.__name__ != R_OPERATOR:
            return super()._print_Function(expr, exp)
        argument = self._print(expr.args[0])
        if r"\frac" in argument:
            text = r"%s\left\lbrace %s\right\rbrace" % (R_OPERATOR, argument)
        else:
            text = r"%s\lbrace %s\rbrace" % (R_OPERATOR, argument)
        return text if exp is None else r"\left(%s\right)^{%s}" % (text, exp)


def _subscripted(name, indices):
    """``name`` with the subscript ``indices``: w^{(l)}_{ji}, v^{(l)}_{b,j}, \\left(\\frac{..}{..}\\right)_{kj}."""
    if _SIMPLE_NAME.fullmatch(name):
        return "%s_{%s}" % (name, indices)
    composite = _SUBSCRIPTED_NAME.fullmatch(name)
    if composite:
        return "%s%s_{%s,%s}" % (composite.group("stem"), composite.group("sup") or "", composite.group("sub"),
                                 indices)
    return r"\left(%s\right)_{%s}" % (name, indices)


def print_latex(expr):
    """LaTeX of ``expr`` in PRML's notation (see :class:`DerivePrinter`)."""
    return DerivePrinter().doprint(expr)
