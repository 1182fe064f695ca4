"""The symbols of the layer equations, in the notation of PRML §5.3–§5.4.

Layer l has pre-activations a⁽ˡ⁾_j, unit outputs z⁽ˡ⁾_j = h(a⁽ˡ⁾_j), weights w⁽ˡ⁾_ji and biases b⁽ˡ⁾_j,
errors δ⁽ˡ⁾_j = ∂E_n/∂a⁽ˡ⁾_j and second derivatives M⁽ˡ⁾_jj' = ∂²E_n/∂a⁽ˡ⁾_j∂a⁽ˡ⁾_j'; the R-operator adds
the direction v⁽ˡ⁾_ji (of the weights) and R{·} of each quantity. The two-layer forms PRML prints are the
layers "1" and "2" with inputs x (layer "0"); the L-layer recursions use the layers "l-1", "l", "l+1".
"""
from types import SimpleNamespace

import sympy as sp

# Unit indices: i in layer l-1 (or inputs), j in layer l (hidden), k in layer l+1 (outputs).
i, j, k = sp.symbols("i j k", integer=True)
i2, j2, k2 = sp.symbols("i' j' k'", integer=True)
r = sp.Symbol("r", real=True)


def _indexed(name):
    return sp.IndexedBase(sp.Symbol(name))


def layer(tag, inputs=False):
    """The symbols of layer ``tag`` (a string such as "1", "l", "l+1"); ``inputs`` for layer 0 (x)."""
    sup = "^{(%s)}" % tag
    size = sp.Symbol("d_{%s}" % tag, integer=True, positive=True)
    ns = SimpleNamespace(tag=tag, size=size)
    if inputs:
        ns.z = _indexed("x")
        ns.Rz = None
        return ns
    ns.a = _indexed("a" + sup)
    ns.z = _indexed("z" + sup)
    ns.w = _indexed("w" + sup)
    ns.b = _indexed("b" + sup)
    ns.delta = _indexed(r"\delta" + sup)
    ns.M = _indexed("M" + sup)
    ns.v = _indexed("v" + sup)
    ns.vb = _indexed(r"v_{b}" + sup)
    ns.Ra = _indexed(r"\mathcal{R}\{a%s\}" % sup)
    ns.Rz = _indexed(r"\mathcal{R}\{z%s\}" % sup)
    ns.Rdelta = _indexed(r"\mathcal{R}\{\delta%s\}" % sup)
    return ns
