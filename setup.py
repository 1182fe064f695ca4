"""Build the compiled kernels of the built-in activations and the network kernels at install time.

The sources are the committed, generated ``generated/*.pyx``; ``generated/`` and ``templates/`` are
installed as ``derive.generated`` and ``derive.templates`` (no top-level ``generated`` module).
"""
import runpy
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
SETTINGS = runpy.run_path(str(HERE / "derive" / "directives.py"))   # shared with derive.build

extensions = [
    Extension("derive.generated." + pyx.stem, [str(pyx.relative_to(HERE))],
              include_dirs=[numpy.get_include()],
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
              extra_compile_args=SETTINGS["compile_flags"](),
              extra_link_args=SETTINGS["link_flags"]())
    for pyx in sorted((HERE / "generated").glob("*.pyx"))
]

setup(
    packages=["derive", "derive.generated", "derive.templates"],
    package_dir={"derive": "derive", "derive.generated": "generated", "derive.templates": "templates"},
    package_data={"derive.generated": ["*.pyx", "*.tex", "*.md"], "derive.templates": ["*.j2"]},
    # force: the directives (release or debug) are not in the .pyx, so a stale .c must never be reused
    ext_modules=cythonize(extensions, compiler_directives={"language_level": 3, **SETTINGS["directives"]()},
                          quiet=True, force=True),
    zip_safe=False,
)
