"""Build the compiled kernels of the built-in activations and the network kernels at install time.

The sources are the committed, generated ``generated/*.pyx``; ``generated/`` and ``templates/`` are
installed as ``derive.generated`` and ``derive.templates`` (no top-level ``generated`` module).
"""
import ctypes.util
import runpy
import sys
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
# glibc's vector math library: the activation loops call libm 2-4 units at a time where it exists
LIBMVEC = sys.platform.startswith("linux") and ctypes.util.find_library("mvec") is not None
DIRECTIVES = runpy.run_path(str(HERE / "derive" / "directives.py"))["directives"]()
DEBUG = runpy.run_path(str(HERE / "derive" / "directives.py"))["debug_build"]()

extensions = [
    Extension("derive.generated." + pyx.stem, [str(pyx.relative_to(HERE))],
              include_dirs=[numpy.get_include()],
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + ([("DERIVE_LIBMVEC", "1")] if LIBMVEC else []),
              libraries=["mvec"] if LIBMVEC else [],
              extra_compile_args=(["-O0", "-g"] if DEBUG else ["-O3"]) + ["-fopenmp-simd"])
    for pyx in sorted((HERE / "generated").glob("*.pyx"))
]

setup(
    packages=["derive", "derive.generated", "derive.templates"],
    package_dir={"derive": "derive", "derive.generated": "generated", "derive.templates": "templates"},
    package_data={"derive.generated": ["*.pyx", "*.tex", "*.md"], "derive.templates": ["*.j2"]},
    # force: the directives (release or debug) are not in the .pyx, so a stale .c must never be reused
    ext_modules=cythonize(extensions, compiler_directives={"language_level": 3, **DIRECTIVES}, quiet=True,
                          force=True),
    zip_safe=False,
)
