"""Symbolic calculus on indexed per-unit expressions: the chain rule the layer equations are derived with.

In:  SymPy expressions over ``Indexed`` quantities (a_j, w_kj, δ_k, ...), with sums over unit indices.
Out: their derivatives, with every Kronecker delta summed out, so that results stay small, per-unit
     recurrences (never an unrolled network).

Two operations carry all derivations in :mod:`derive.layers`:

* :func:`total_diff` — ∂(expr)/∂x when ``expr`` contains quantities of *other* layers that depend on x
  through rules the caller states (e.g. ∂δ_k/∂a_j' = Σ_k' M_kk' ∂a_k'/∂a_j', the definition of M).
* :func:`r_operator` — Pearlmutter's R{·} = d/dr|_{r=0} of the expression at w + r·v (PRML 5.97): the
  same chain rule with x = r, where R{w} = v and R{q} is named for every other quantity q.
"""
import itertools

import sympy as sp

_fresh = itertools.count()


def fresh_index(prefix="q"):
    """A new integer index symbol, distinct from every index in use."""
    return sp.Symbol("%s_%d" % (prefix, next(_fresh)), integer=True)


def drop_range_guards(expr):
    """Remove SymPy's guards ``Piecewise((e, 1 <= j <= d), (0, True))`` on index ranges.

    Every index in these equations ranges over its layer by construction, so the guard always holds.
    """
    def is_guard(p):
        return (isinstance(p, sp.Piecewise) and len(p.args) == 2 and p.args[1].cond == sp.true
                and p.args[1].expr == 0 and all(s.is_integer for s in p.args[0].cond.free_symbols))

    return expr.replace(is_guard, lambda p: p.args[0].expr)


def pull_out(expr):
    """Move factors that do not depend on a sum's index out of the sum; split sums of sums.

    Σ_k h'(a_j) w_kj δ_k  →  h'(a_j) Σ_k w_kj δ_k.
    """
    def split(s):
        (index, *_), = s.limits if len(s.limits) == 1 else (None,)
        if index is None:  # several limits: nest them first
            inner = s.function
            for limit in s.limits:
                inner = sp.Sum(inner, limit)
            return pull_out(inner)
        body = pull_out(s.function)
        terms = []
        for term in sp.Add.make_args(sp.expand(body, deep=False, mul=True, power_base=False, power_exp=False,
                                               log=False, multinomial=False)):
            inside = [f for f in sp.Mul.make_args(term) if index in f.free_symbols]
            outside = [f for f in sp.Mul.make_args(term) if index not in f.free_symbols]
            summand = sp.Mul(*inside)
            terms.append(sp.Mul(*outside) * (sp.Sum(summand, s.limits[0]) if inside else s.limits[0][2]
                                              - s.limits[0][1] + 1))
        return sp.Add(*terms)

    return expr.replace(lambda e: isinstance(e, sp.Sum), split)


def sum_over(expr, index, upper):
    """Σ_{index=1}^{upper} expr, with Kronecker deltas in ``index`` summed out."""
    expr = pull_out(sp.expand(expr))
    total = sp.S.Zero
    for term in sp.Add.make_args(expr):
        deltas = [f for f in sp.Mul.make_args(term)
                  if isinstance(f, sp.KroneckerDelta) and index in f.free_symbols]
        if deltas:
            delta = deltas[0]
            other = delta.args[1] if delta.args[0] == index else delta.args[0]
            rest = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not delta])
            total += rest.subs(index, other)
        elif index in term.free_symbols:
            total += pull_out(sp.Sum(term, (index, 1, upper)))
        else:
            total += term * upper
    return total


def partial(expr, quantity):
    """∂ expr / ∂ quantity for an Indexed ``quantity``, Kronecker deltas of bound indices summed out."""
    return pull_out(drop_range_guards(sp.diff(expr, quantity).doit()))


def collapse_deltas(expr):
    """Sum out Kronecker deltas that stand inside existing sums (Σ_k' δ_kk' f_k' → f_k)."""
    def collapse(s):
        inner = s.function
        for index, lower, upper in reversed(s.limits):
            inner = sum_over(inner, index, upper) if lower == 1 else sp.Sum(inner, (index, lower, upper))
        return inner

    return expr.replace(lambda e: isinstance(e, sp.Sum) and e.has(sp.KroneckerDelta), collapse)


class Model:
    """Indexed quantities and how each depends on the others: the chain rule's bookkeeping.

    definitions: IndexedBase Q → function(*index) giving the expression Q[index] stands for
                 (a_j = Σ_i w_ji z_i + b_j; z_j = h(a_j)).
    rules:       IndexedBase Q → function(x, *index) giving dQ[index]/dx directly, for quantities defined
                 as derivatives of E_n (δ, whose derivative is M by definition 5.92).
    sizes:       IndexedBase Q → the size symbols of its indices.
    """

    def __init__(self, definitions, rules, sizes):
        self.definitions = definitions
        self.rules = rules
        self.sizes = sizes

    def d(self, expr, x):
        """The total derivative d expr / dx, through every definition and rule (the chain rule)."""
        result = partial(expr, x)
        for base in {q.base for q in expr.atoms(sp.Indexed)}:
            if base not in self.definitions and base not in self.rules:
                continue
            if isinstance(x, sp.Indexed) and x.base == base:
                continue  # x itself: its partial derivative is already in `result`
            index = tuple(fresh_index() for _ in self.sizes[base])
            inner = (self.rules[base](x, *index) if base in self.rules
                     else self.d(self.definitions[base](*index), x))
            if inner == 0:
                continue
            term = partial(expr, base[index]) * inner
            for q, upper in zip(index, self.sizes[base]):
                term = sum_over(term, q, upper)
            result += term
        return tidy(collapse_deltas(tidy(result)))

    def r(self, expr, directions):
        """Pearlmutter's R{expr} = d/dr expr(w + r v)|_{r=0}, one level deep (PRML 5.97).

        ``directions`` maps each IndexedBase Q on which expr depends to the IndexedBase of R{Q}
        (v for w; R{a} for a; ...), or to None where R{Q} = 0 (inputs, targets).
        """
        result = sp.S.Zero
        for base in {q.base for q in expr.atoms(sp.Indexed)}:
            target = directions.get(base)
            if target is None:
                continue
            index = tuple(fresh_index() for _ in self.sizes[base])
            term = partial(expr, base[index]) * target[index]
            for q, upper in zip(index, self.sizes[base]):
                term = sum_over(term, q, upper)
            result += term
        return tidy(collapse_deltas(tidy(result)))


def tidy(expr):
    """A canonical, readable form: expanded, range guards dropped, independent factors out of sums."""
    expr = pull_out(drop_range_guards(sp.expand(expr)))
    return sp.Add(*[sp.factor_terms(t) for t in sp.Add.make_args(expr)])


_NICE_INDICES = ["k", "k'", "m", "m'", "p", "p'", "q", "q'", "r", "s", "u", "u'"]

#: PRML's letters for a unit index, by the layer a sum runs over: i below, j in the layer, k above.
_LETTERS_BY_LAYER = {
    "l-1": ["i", "i'", "i''"], "0": ["i", "i'", "i''"],
    "l": ["j", "j'", "j''"], "1": ["j", "j'", "j''"], "m-1": ["j''", "p", "p'"],
    "l+1": ["k", "k'", "k''"], "2": ["k", "k'", "k''"], "L": ["k", "k'", "k''"], "m": ["k'", "k''", "m'"],
}


def rename_dummies(expr, avoid=()):
    """Give the summation indices made by :func:`fresh_index` readable names (i, j, k, k', ...).

    A sum over the layer below gets i, over the layer itself j, over the layer above k, as in PRML.
    Sums side by side may share a letter; a nested sum never takes its enclosing sums' letters, nor a
    name free in the equation (``avoid`` and the expression's own free symbols).
    """
    free = {str(s) for s in avoid} | {str(s) for s in expr.free_symbols}
    return _rename(expr, frozenset(free))


def _rename(expr, taken):
    if isinstance(expr, sp.Sum) and len(expr.limits) == 1:
        (index, lower, upper), = expr.limits
        if index.name.startswith(("q_", "s_")):
            tag = str(upper)[3:-1] if str(upper).startswith("d_{") else None
            name = next(n for n in _LETTERS_BY_LAYER.get(tag, []) + _NICE_INDICES
                        if n not in taken and n not in {str(s) for s in expr.function.free_symbols})
            new = sp.Symbol(name, integer=True)
            body = _rename(expr.function.xreplace({index: new}), taken | {name})
            return sp.Sum(body, (new, lower, upper))
        return sp.Sum(_rename(expr.function, taken | {str(index)}), *expr.limits)
    if not expr.args or isinstance(expr, sp.Indexed):
        return expr
    return expr.func(*[_rename(a, taken) for a in expr.args])
