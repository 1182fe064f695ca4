"""derive — exact second derivatives of feed-forward networks, derived symbolically and compiled.

The pipeline, one module per stage:

    specification   (Activation, Loss; expressions parses user text safely; names holds the names
                     that `derive generate` gave to expressions)
    → scalar        (h, h', h'' and their forms in z = h(a), made numerically safe)
    → layers, loss  (PRML's layer and output-layer equations, derived with SymPy; calculus holds the
                     chain rule they are derived with)
    → derivation    (one activation with one loss: the equations, generic and specialised)
    → latex         (the derivation as a LaTeX / Markdown document)
    → codegen       (equations lowered and printed into jinja2 templates: Cython sources)
    → build         (compile and cache; the built-in kernels are compiled at install)
    → kernels       (load a compiled kernel module)
    → network       (the public API: MLP)
    → applications  (what PRML uses the second derivatives for: Newton steps, pruning, Laplace)
"""
__version__ = "0.1.0"

from .errors import BuildError, DerivationError, DeriveError, ExpressionError, SpecificationError
from .specification import ACTIVATIONS, LOSSES, Activation, Loss
from .derivation import Derivation, derivation


def __getattr__(name):
    # The compiled parts are imported on first use, so that the symbolic stages work without them.
    if name == "MLP":
        from .network import MLP
        return MLP
    if name == "load":
        from .kernels import load
        return load
    raise AttributeError("module 'derive' has no attribute %r" % name)


__all__ = ["ACTIVATIONS", "LOSSES", "Activation", "Loss", "Derivation", "derivation", "MLP", "load",
           "DeriveError", "ExpressionError", "SpecificationError", "DerivationError", "BuildError",
           "__version__"]
