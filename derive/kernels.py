"""Stage 6 — load: the compiled kernel module of an activation, and the network kernels.

In:  an activation (built-in name, expression string, or Activation).
Out: the imported extension module. Built-ins were compiled by ``pip install`` and are imported as
     ``derive.generated.<name>``; any other activation is derived, rendered and compiled on demand into
     the per-user cache (:mod:`derive.build`) and loaded from there — the second use compiles nothing.

When derive runs from a source checkout whose built-in kernels have not been compiled, they are compiled
from the committed ``generated/*.pyx`` into the same cache.
"""
import importlib
import sys

from .build import build_and_load
from .codegen import render_activation
from .resources import resource_dir
from .specification import resolve_activation


def _stderr_progress(message):
    print("derive: " + message, file=sys.stderr, flush=True)


def load(activation, progress=None):
    """The compiled kernel module of ``activation`` (see the module docstring).

    ``progress`` receives short messages while a kernel is compiled (default: printed to stderr).
    """
    activation = resolve_activation(activation)
    progress = progress or _stderr_progress
    if activation.builtin:
        return _builtin_module(activation.name, progress)
    return build_and_load(render_activation(activation), activation.name, progress=progress)


def load_network(progress=None):
    """The compiled network kernels (``derive.generated.network``)."""
    return _builtin_module("network", progress or _stderr_progress)


def _builtin_module(name, progress):
    try:
        return importlib.import_module("derive.generated." + name)
    except ImportError:
        source = (resource_dir("generated") / (name + ".pyx")).read_text(encoding="utf-8")
        return build_and_load(source, name, progress=progress)
