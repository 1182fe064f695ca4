"""Stage 3 — LaTeX: a derivation as a document.

In:  a :class:`~derive.derivation.Derivation`.
Out: LaTeX / Markdown text — a standalone LaTeX document (:func:`render_latex`), the same content as
     GitHub Markdown (:func:`render_markdown`) and a short fragment for Jupyter
     (:func:`render_latex_fragment`); :func:`write_documents` and :func:`compile_pdf` put them on disk.

Equations are printed by :class:`DerivePrinter`, SymPy's LaTeX printer in PRML's notation
(w⁽ˡ⁾_ji, ∂E_n/∂w, I_jj', R{·}). The text is deterministic: rendering the same derivation in any
process gives the same bytes, so the documents in ``generated/`` can be compared byte for byte.
"""
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
from .resources import resource_dir, write_atomically
from .scalar import is_smooth

# --- printing expressions ------------------------------------------------------------------------

R_OPERATOR = r"\mathcal{R}"
_SIMPLE_NAME = re.compile(r"(?:\\[A-Za-z]+|[A-Za-z])(?:\^\{[^{}]*\})?")
_SUBSCRIPTED_NAME = re.compile(r"(?P<stem>\\?[A-Za-z]+)_\{(?P<sub>[^{}]*)\}(?P<sup>\^\{[^{}]*\})?")
_R_NAME = re.compile(r"\\mathcal\{R\}\\\{(?P<inner>.*)\\\}")
_LETTER_INDEX = re.compile(r"[A-Za-z]'*")
_PLAIN_INDEXED = re.compile(r"[A-Za-z]_\{[^{}]*\}")


class DerivePrinter(LatexPrinter):
    """SymPy's LaTeX printer in PRML's notation.

    * Indexed quantities as w^{(l)}_{ji} (indices without commas when each is one letter), the
      R-quantities as R{a^{(l)}_j} and quantities with a composite name as (∂y/∂a)_{kj};
    * Kronecker deltas as I_{jj'} (PRML 5.94);
    * unevaluated derivatives as ∂²E_n/∂w_r∂w_s, in the order the variables are given;
    * R(x) as R{x}; exp(x) as \\exp(x) when x holds a fraction; ln for log (PRML's notation).
    """

    _default_settings = {**LatexPrinter._default_settings, "long_frac_ratio": 3, "ln_notation": True}

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
        text = super()._print_Pow(expr)
        if isinstance(expr.base, sp.Indexed):
            base = self._print(expr.base)
            if not _PLAIN_INDEXED.fullmatch(base):  # w^{(l)}_{ji}^{2} would be a double superscript
                text = text.replace(base + "^", r"\left(%s\right)^" % base)
        return text

    def _print_Derivative(self, expr):
        order = sum(count for _, count in expr.variable_count)
        partial = r"\partial" if order == 1 else r"\partial^{%d}" % order
        below = " ".join(r"\partial %s" % self._print(v if n == 1 else sp.Pow(v, n, evaluate=False))
                         for v, n in expr.variable_count)
        if expr.expr.is_Symbol:
            return r"\frac{%s %s}{%s}" % (partial, self._print(expr.expr), below)
        return r"\frac{%s}{%s} %s" % (partial, below, self.parenthesize(expr.expr, PRECEDENCE["Mul"]))

    def _print_ExpBase(self, expr, exp=None):
        argument = self._print(expr.args[0])
        if r"\frac" not in argument:
            return super()._print_ExpBase(expr, exp)
        text = r"\exp\left(%s\right)" % argument  # e^{-\frac{a^2}{2}} would set the fraction tiny
        return text if exp is None else r"%s^{%s}" % (text, exp)

    def _print_Heaviside(self, expr, exp=None):
        if len(expr.args) == 1 or expr.args[1] != 0:
            return super()._print_Heaviside(expr, exp)
        text = r"H\left(%s\right)" % self._print(expr.args[0])  # H(0) = 0, stated in the documents
        return text if exp is None else r"H^{%s}\left(%s\right)" % (exp, self._print(expr.args[0]))

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


# --- laying out long equations -------------------------------------------------------------------

#: The width of a display line in the units of :func:`_width` (5–6.3 pt each, measured with pdflatex
#: on every built-in's equations; 78 units fit the 495 pt text width of the document).
LINE_WIDTH = 78
_SCRIPT = 0.6                                   # the width of a sub- or superscript character
_COMMAND_WIDTH = {r"\left": 0.5, r"\right": 0.5, r"\quad": 2, r"\qquad": 4, r"\sum": 2}
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|.", re.S)


def _width(tex):
    """The approximate printed width of the math ``tex``: fractions count their wider part, scripts
    count less than full-size symbols; good enough to decide where a display must break."""
    return _group_width(_TOKEN.findall(tex), 0)[0]


def _group_width(tokens, n, stop="}"):
    """Width of the tokens from ``n`` up to ``stop`` (the closing brace of a group, or the \\end of an
    environment, whose rows count by the widest); (width, index after ``stop``)."""
    rows, width, script = [], 0.0, 0.0
    while n < len(tokens):
        token = tokens[n]
        n += 1
        if token == stop:
            break
        stacked, script = script, 0.0
        if token == "{":
            inner, n = _group_width(tokens, n)
        elif token == r"\begin":
            _, n = _argument_width(tokens, n)
            inner, n = _group_width(tokens, n, stop=r"\end")
            _, n = _argument_width(tokens, n)
        elif token == r"\\":
            rows.append(width)
            inner, width = 0.0, 0.0
        elif token in ("^", "_"):
            inner, n = _argument_width(tokens, n)
            script = inner * _SCRIPT
            inner = max(0.0, script - stacked)  # a subscript and a superscript stand one above the other
        elif token == r"\frac":
            numerator, n = _argument_width(tokens, n)
            denominator, n = _argument_width(tokens, n)
            inner = max(numerator, denominator)
        elif token in ("+", "-", "=", "<", ">"):
            inner = 2
        else:
            inner = 0 if token.isspace() else _COMMAND_WIDTH.get(token, 1)
        width += inner
    return max(rows + [width]), n


def _argument_width(tokens, n):
    """Width of the argument starting at ``tokens[n]`` (a group or one token); (width, next index)."""
    if n < len(tokens) and tokens[n] == "{":
        return _group_width(tokens, n + 1)
    return _group_width(tokens[n:n + 1], 0)[0], n + 1


def display(lhs, rhs):
    """``lhs = rhs`` as display math: one line if it fits :data:`LINE_WIDTH`, else an ``aligned``
    block (see :func:`rows`)."""
    lines = rows(latex(lhs), rhs)
    return lines[0].replace(" &= ", " = ", 1) if len(lines) == 1 else aligned(lines)


def aligned(lines):
    """Rows of ``lhs &= ...`` / ``& ...`` as one ``aligned`` block."""
    return "\\begin{aligned}\n%s\n\\end{aligned}" % " \\\\\n".join(lines)


def rows(left, rhs):
    r"""The rows of ``left = rhs`` for an ``aligned`` block: ``left &= ...`` and continuation rows
    ``& \quad ...``. The right-hand side breaks between its top-level terms, a term too wide for a
    line between its factors, and a bracketed sum too wide between its terms; each term that takes
    several rows starts a row of its own. Rows stay balanced (\left. and \right. close a bracket
    that a break opens)."""
    budget = LINE_WIDTH - _width(left + " = ")
    lines, current = [], []
    for n, term in enumerate(rhs.as_ordered_terms() if isinstance(rhs, sp.Add) else [rhs]):
        pieces = _term_pieces(term, n == 0, budget)
        for number, piece in enumerate(pieces):
            if current and ((number == 0 and len(pieces) > 1) or _width(" ".join(current + [piece])) > budget):
                lines.append(current)
                current = [r"\quad" if number == 0 else r"\qquad"]
            current.append(piece)
    lines.append(current)
    return ["%s &= %s" % (left, _balanced(" ".join(lines[0])))] + ["& " + _balanced(" ".join(line))
                                                                  for line in lines[1:]]


def _term_pieces(term, first, budget):
    """A term of a sum as pieces (see :func:`_pieces`), its sign on the first."""
    negative = term.could_extract_minus_sign()
    pieces = _pieces(-term if negative else term, budget)
    return ["%s%s" % ("- " if negative else ("" if first else "+ "), pieces[0])] + pieces[1:]


def _pieces(expr, budget):
    """``expr`` printed as pieces that may go on separate rows: one piece if it fits ``budget``; for a
    sum, its terms; for a product, its plain factors together, then each bracketed factor (itself
    broken if too wide), then each summation."""
    whole = latex(expr)
    if _width(whole) <= budget:
        return [whole]
    if isinstance(expr, sp.Add):
        return [piece for n, term in enumerate(expr.as_ordered_terms())
                for piece in _term_pieces(term, n == 0, budget)]
    if not isinstance(expr, sp.Mul):
        return [whole]
    plain, bracketed, sums = [], [], []
    for factor in expr.as_ordered_factors():
        if isinstance(factor, sp.Sum):
            sums.append(latex(factor))
        elif isinstance(factor, sp.Add):
            bracketed += _bracketed(factor, "", budget)
        elif factor.is_Pow and isinstance(factor.base, sp.Add) and factor.exp.is_Integer and factor.exp > 0:
            bracketed += _bracketed(factor.base, "^{%s}" % factor.exp, budget)
        else:
            plain.append(factor)
    return ([latex(sp.Mul(*plain))] if plain else []) + bracketed + sums


def _bracketed(add, exponent, budget):
    pieces = _pieces(add, budget)
    return [r"\left(" + pieces[0]] + pieces[1:-1] + [pieces[-1] + r"\right)" + exponent] if len(pieces) > 1 \
        else [r"\left(%s\right)%s" % (pieces[0], exponent)]


_LEFT, _RIGHT = re.compile(r"\\left(?![A-Za-z])"), re.compile(r"\\right(?![A-Za-z])")


def _balanced(row):
    """``row`` with \\left. or \\right. added where a break split a \\left( ... \\right) pair."""
    unclosed = len(_LEFT.findall(row)) - len(_RIGHT.findall(row))
    opening = r"\left. " * max(0, -unclosed) + ("{} " if unclosed < 0 else "")  # {}: a leading + stays binary
    return opening + row + r" \right." * max(0, unclosed)


# --- text ----------------------------------------------------------------------------------------

_SUPERSCRIPTS = {"⁽": "(", "⁾": ")", "⁻": "-", "¹": "1", "²": "2", "ˡ": "l", "ᵐ": "m", "ᴸ": "L", "ᵀ": "T"}
_MATH_SYMBOLS = {"δ": r"\delta", "Λ": r"\Lambda", "Σ": r"\Sigma", "σ": r"\sigma", "∂": r"\partial",
                 "−": "-", "–": "-", "→": r"\to", "≤": r"\leq", "≥": r"\geq", "≃": r"\simeq", "⊙": r"\odot",
                 "·": r"\cdot", "×": r"\times"}
_TEXT_SYMBOLS = {"–": "--", "—": "---", "’": "'", "…": r"\dots{}"}
_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"$<$", ">": r"$>$", "|": r"$|$"}
_CODE_ESCAPES = {c: e for c, e in _TEX_ESCAPES.items() if c not in "<>|"}  # the typewriter font has them
_MATH_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "{": r"\{", "}": r"\}", "\\": r"\backslash ",
                 "~": r"\sim ", "^": r"\wedge "}
_MATHY = set(_SUPERSCRIPTS) | set(_MATH_SYMBOLS) - {"–"} | {"_", "=", "<", ">"}
_MATH_TOKEN = re.compile(r"_([A-Za-z0-9']+)|([%s]+)|(.)" % "".join(_SUPERSCRIPTS), re.S)
_ADJACENT_INDICES = re.compile(r"(?<=[A-Za-z0-9])(?=[A-Za-z])")  # m-1l → m-1,l
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~$])")


def tex_text(text):
    """``text`` (a description, possibly with Unicode math such as δ_k, ∂²E_n/∂a_j², a⁽ᴸ⁾) as LaTeX
    text for pdflatex: runs of words that are math become $...$, everything else is escaped."""
    out, run = [], []
    for word in re.split(r"( )", text):
        if word != " " and _is_math_word(word):
            run.append(word)
        elif word == " " and run:
            run.append(word)
        else:
            out.append(_math_run(run) + _plain(word))
            run = []
    out.append(_math_run(run))
    return "".join(out)


def _is_math_word(word):
    core = word.strip("(),.:;")
    return bool(set(word) & _MATHY) or (len(core) == 1 and core.isascii() and core.isalpha()
                                          and core not in "aA")


def _math_run(words):
    """Words that are math, as inline math; trailing spaces and punctuation stay outside."""
    text = "".join(words)
    body = text.rstrip(" ,.:;")
    if not body:
        return text
    return "$%s$%s" % (_math(body), text[len(body):])


def _math(text):
    """Unicode math as LaTeX math: x_k → x_{k}, a⁽ᴸ⁾ → a^{(L)}, G⁽ᵐˡ⁾ → G^{(m,l)}, δ → \\delta."""
    out = []
    for subscript, superscript, char in _MATH_TOKEN.findall(text):
        if subscript:
            out.append("_{%s}" % subscript)
        elif superscript:
            indices = "".join(_SUPERSCRIPTS[c] for c in superscript)
            out.append("^{%s}" % _ADJACENT_INDICES.sub(",", indices))
        elif char in _MATH_SYMBOLS:
            out.append(_MATH_SYMBOLS[char] + (" " if _MATH_SYMBOLS[char].startswith("\\") else ""))
        elif char in _MATH_ESCAPES:
            out.append(_MATH_ESCAPES[char])
        elif ord(char) > 127:
            out.append(r"\text{[U+%04X]}" % ord(char))
        else:
            out.append(char)
    return "".join(out)


def _plain(text):
    """Plain text escaped for LaTeX; Unicode outside the tables becomes a visible [U+XXXX]."""
    out = []
    for char in text:
        if char in _TEX_ESCAPES:
            out.append(_TEX_ESCAPES[char])
        elif char in _TEXT_SYMBOLS:
            out.append(_TEXT_SYMBOLS[char])
        elif char in _MATH_SYMBOLS or char in _SUPERSCRIPTS:
            out.append("$%s$" % _math(char))
        elif ord(char) > 127:
            out.append(r"\texttt{[U+%04X]}" % ord(char))
        else:
            out.append(char)
    return "".join(out)


def tex_code(text):
    """``text`` verbatim in typewriter type (an expression or a name), breakable after , + * / )."""
    escaped = "".join(_CODE_ESCAPES.get(c, c) if ord(c) < 128 else "[U+%04X]" % ord(c) for c in text)
    return r"\texttt{%s}" % re.sub(r"([,+*/)])", r"\1\\allowbreak{}", escaped)


def markdown_text(text):
    """``text`` for Markdown: Unicode kept, Markdown's special characters escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def markdown_code(text):
    """``text`` as a Markdown code span (fenced with more backticks than it contains)."""
    fence = "`" * (max((len(m) for m in re.findall("`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return "%s%s%s%s%s" % (fence, padding, text, padding, fence)


def sentence(text):
    """``text`` with its first letter capitalised (descriptions are written in lower case)."""
    return text[:1].upper() + text[1:]


# --- the document --------------------------------------------------------------------------------

#: The equations the Jupyter fragment shows besides h, h', h'' (specialised to the activation).
FRAGMENT_KEYS = ("delta_hidden", "M_hidden", "R_delta")


def _shown(eq, specialised=None):
    """An equation as the documents show it; ``specialised`` only when it differs from ``eq``."""
    changed = specialised is not None and specialised != eq
    return {"tag": eq.tag, "description": sentence(eq.description), "definition": eq.definition,
            "generic": display(eq.lhs, eq.rhs),
            "specialised": display(specialised.lhs, specialised.rhs) if changed else None}


def _sections(derivation):
    """The layer equations grouped by PRML section, in order of first appearance."""
    sections = {}
    for eq, specialised in zip(derivation.equations, derivation.specialised):
        sections.setdefault(eq.section, []).append(_shown(eq, specialised))
    return [{"title": title, "equations": equations} for title, equations in sections.items()]


def _scalar_blocks(scalar):
    """h, h', h'' in a; and h', h'' in z = h(a) where those forms exist (None otherwise)."""
    in_a = aligned([row for name, form in (("h(a)", scalar.h), ("h'(a)", scalar.d1), ("h''(a)", scalar.d2))
                    for row in rows(name, form)])
    in_z = [row for name, form in (("h'(a)", scalar.d1_z), ("h''(a)", scalar.d2_z)) if form is not None
            for row in rows(name, form)]
    return in_a, (aligned(in_z) if in_z else None)


def _context(derivation):
    """Everything the templates show, as plain data (text unescaped; math as LaTeX)."""
    in_a, in_z = _scalar_blocks(derivation.scalar)
    return {
        "name": derivation.activation.name,
        "expression": derivation.activation.expression or str(derivation.activation.expr),
        "loss": derivation.loss.name,
        "loss_description": derivation.loss.description,
        "smooth": is_smooth(derivation.activation.expr),
        "scalar_in_a": in_a,
        "scalar_in_z": in_z,
        "loss_equations": [_shown(eq) for eq in derivation.loss_equations],
        "sections": _sections(derivation),
    }


def template_dir():
    """The folder of the jinja2 templates (``derive/templates`` installed, ``templates/`` in a checkout)."""
    return resource_dir("templates")


@lru_cache(maxsize=None)
def _environment(kind):
    """The jinja2 environment for "tex" or "md" templates; delimiters that do not clash with LaTeX."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
        block_start_string="<%", block_end_string="%>", variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>")
    environment.filters["text"] = tex_text if kind == "tex" else markdown_text
    environment.filters["code"] = tex_code if kind == "tex" else markdown_code
    return environment


def render_latex(derivation):
    """The derivation as a standalone LaTeX document (pdflatex, packages of texlive-latex-base only)."""
    return _environment("tex").get_template("derivation.tex.j2").render(**_context(derivation))


def render_markdown(derivation):
    """The derivation as GitHub Markdown: the same content, each equation in a ```math block."""
    return _environment("md").get_template("derivation.md.j2").render(**_context(derivation))


def render_latex_fragment(derivation):
    """h, h', h'' and a few key equations as $$...$$ blocks, for Jupyter's ``_repr_latex_``."""
    in_a, in_z = _scalar_blocks(derivation.scalar)
    blocks = [in_a] + ([in_z + r"\qquad\text{where } z = h(a)"] if in_z else [])
    for key in FRAGMENT_KEYS:
        eq = derivation.equation(key, specialised=True)
        blocks.append(r"%s \tag{%s}" % (display(eq.lhs, eq.rhs), eq.tag))
    return "\n".join("$$%s$$" % block for block in blocks)


# --- files ---------------------------------------------------------------------------------------

PDFLATEX_TIMEOUT = 300


def write_documents(derivation, directory):
    """Write ``<activation name>.tex`` and ``.md`` into ``directory`` (created if needed), each
    atomically; return (tex_path, md_path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = derivation.activation.name
    tex_path, md_path = directory / (name + ".tex"), directory / (name + ".md")
    write_atomically(tex_path, render_latex(derivation))
    write_atomically(md_path, render_markdown(derivation))
    return tex_path, md_path


def compile_pdf(tex_path, out_dir):
    """Compile ``tex_path`` with pdflatex in a temporary directory; the PDF is written atomically to
    ``out_dir`` under the same stem. Raises DeriveError if pdflatex is missing or fails."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise DeriveError("pdflatex is not installed; install TeX Live (Debian: apt-get install "
                          "texlive-latex-base texlive-latex-recommended) or use --format tex/md")
    tex_path, out_dir = Path(tex_path), Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="derive-latex-") as work:
        source = Path(work) / "document.tex"
        shutil.copyfile(tex_path, source)
        command = [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", source.name]
        try:
            result = subprocess.run(command, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, timeout=PDFLATEX_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DeriveError("pdflatex did not finish %s within %d s" % (tex_path, PDFLATEX_TIMEOUT)) from None
        pdf, log = source.with_suffix(".pdf"), source.with_suffix(".log")
        if result.returncode != 0 or not pdf.exists():
            output = log.read_bytes() if log.exists() else result.stdout
            raise DeriveError("pdflatex failed on %s; the end of its log:\n%s" % (tex_path, _tail(output)))
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / (tex_path.stem + ".pdf")
        write_atomically(target, pdf.read_bytes())
    return target


def _tail(output, lines=40):
    return "\n".join(output.decode("utf-8", "replace").splitlines()[-lines:])
