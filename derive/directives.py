"""Cython compiler directives of derive's kernels, release and debug.

Kept free of imports so that ``setup.py`` can read it without importing derive. The kernels' ``.pyx``
files set none of these themselves: a directive in a ``.pyx`` header would override the debug build.
"""
import os

RELEASE = {"boundscheck": False, "wraparound": False, "initializedcheck": False, "cdivision": True}
DEBUG = {"boundscheck": True, "wraparound": True, "initializedcheck": True, "cdivision": False}


def debug_build():
    """True when ``DERIVE_DEBUG_BUILD=1`` asks for bounds-checked, unoptimised builds."""
    return os.environ.get("DERIVE_DEBUG_BUILD") == "1"


def directives():
    """The directives in force: :data:`DEBUG` for a debug build, else :data:`RELEASE`."""
    return dict(DEBUG if debug_build() else RELEASE)
