"""Build settings of derive's kernels, release and debug: Cython directives and C compiler/linker flags.

Kept free of derive imports so that ``setup.py`` (the built-in kernels) and :mod:`derive.build` (kernels
compiled at run time) read the same settings without importing derive. The kernels' ``.pyx`` files set
none of these themselves: a directive in a ``.pyx`` header would override the debug build.
"""
import ctypes.util
import os
import sys

RELEASE = {"boundscheck": False, "wraparound": False, "initializedcheck": False, "cdivision": True}
DEBUG = {"boundscheck": True, "wraparound": True, "initializedcheck": True, "cdivision": False}


def debug_build():
    """True when ``DERIVE_DEBUG_BUILD=1`` asks for bounds-checked, unoptimised builds."""
    return os.environ.get("DERIVE_DEBUG_BUILD") == "1"


def directives():
    """The directives in force: :data:`DEBUG` for a debug build, else :data:`RELEASE`."""
    return dict(DEBUG if debug_build() else RELEASE)


def has_libmvec():
    """True where glibc's vector math library exists: the elementwise loops then call libm 2-8 units at a time."""
    return sys.platform.startswith("linux") and ctypes.util.find_library("mvec") is not None


def compile_flags():
    """Flags of the C compiler: ``-O3`` (``-O0 -g`` for a debug build), OpenMP (threads over samples and
    SIMD loops), and ``-DDERIVE_LIBMVEC`` where libmvec exists.

    ``-fno-math-errno -fno-trapping-math`` let loops that call libm or branch vectorise; the kernels
    never read ``errno`` or floating-point exception flags, so no value changes.
    """
    optimisation = ["-O0", "-g"] if debug_build() else ["-O3", "-DNDEBUG"]
    return [*optimisation, "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
            *(["-DDERIVE_LIBMVEC"] if has_libmvec() else [])]


def link_flags():
    """Flags of the linker: OpenMP's runtime, and libmvec where it exists."""
    return ["-fopenmp", *(["-lmvec"] if has_libmvec() else [])]
