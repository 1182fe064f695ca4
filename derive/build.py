"""Build and cache: Cython source text in, path of a compiled extension module out.

This stage compiles the activation kernels a user defines at run time (the built-in kernels are
compiled once by ``pip install``). A module is named ``<stem>_<key>``, where the key hashes the source
together with everything that could make an old build wrong for this interpreter: the Cython, derive
and NumPy versions, the compiler command and flags, and the Python ABI. A module built once is found
again in the cache directory and never compiled twice.

Each build runs in a fresh temporary directory inside the cache directory and the finished module is
moved into place with :func:`os.replace`, so the final path holds either nothing or a complete
module. An inter-process lock per module name (``fcntl.flock`` on ``<name>.lock``) makes processes
and threads that build the same source at once wait for one another: one compiles, all load the same
file. Set ``DERIVE_DEBUG_BUILD=1`` for unoptimised builds with debug symbols and Cython's bounds,
wraparound and initialisation checks on (:mod:`derive.directives`; the generated ``.pyx`` files set no
such directive themselves, so the command line decides).
"""

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

import Cython
import numpy

from derive.directives import compile_flags, directives, link_flags
from derive.errors import BuildError, SpecificationError

_load_lock = threading.Lock()


def cache_dir():
    """Return the directory compiled modules are cached in (:func:`cache_path`), creating it (mode 0o700)
    if needed."""
    return _make_dir(cache_path())


def cache_path():
    """The directory compiled modules are cached in, which may not exist yet: ``$DERIVE_CACHE_DIR`` if
    set, else ``$XDG_CACHE_HOME/derive``, else ``~/.cache/derive``."""
    if os.environ.get("DERIVE_CACHE_DIR"):
        return pathlib.Path(os.environ["DERIVE_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]) / "derive"
    return pathlib.Path.home() / ".cache" / "derive"


def compiler_flags():
    """Return the flags passed to the C compiler (:func:`derive.directives.compile_flags`) plus the
    ones every shared extension module needs."""
    position_independent = shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC")
    return [*compile_flags(), "-fwrapv", "-fno-strict-aliasing", *position_independent]


def cache_key(source):
    """Return 16 hex digits of a SHA-256 over ``source`` and everything else that shapes its build."""
    parts = [
        source,
        Cython.__version__,
        _derive_version(),
        numpy.__version__,
        _cython_options(),
        _compiler(),
        compiler_flags(),
        _linker(),
        link_flags(),
        sysconfig.get_config_var("EXT_SUFFIX"),
        sys.implementation.cache_tag,
    ]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:16]


def build_extension(source, stem, *, directory=None, progress=None):
    """Compile ``source`` into the extension module ``<stem>_<key>`` and return the module's path.

    Parameters
    ----------
    source : str
        Cython source text of the module.
    stem : str
        Readable start of the module name (an ASCII identifier), such as the activation's name.
    directory : path-like, optional
        Where the module is cached; :func:`cache_dir` by default.
    progress : callable, optional
        Called with short messages (str) while a build runs.

    If the module is already in ``directory`` its path is returned at once and nothing is compiled.

    Raises
    ------
    BuildError
        If Cython, the C compiler or the linker fails; nothing is left at the returned path then.
    """
    if not (stem.isidentifier() and stem.isascii()):
        raise SpecificationError(f"module stem {stem!r} is not an ASCII Python identifier")
    directory = _make_dir(pathlib.Path(directory)) if directory is not None else cache_dir()
    name = f"{stem}_{cache_key(source)}"
    target = directory / (name + sysconfig.get_config_var("EXT_SUFFIX"))
    if target.exists():  # os.replace puts complete modules only, so no lock is needed to use one
        return target
    with file_lock(directory / f"{name}.lock", name, progress):
        if not target.exists():
            _remove_abandoned_builds(directory, name)
            _build(source, name, target, progress)
    return target


def _remove_abandoned_builds(directory, name):
    """Delete the work folders of earlier builds of ``name`` that were killed before they could clean up.

    Only called under the module's lock, so no live build of the same module can own one of them.
    """
    for abandoned in directory.glob(f".build-{name}-*"):
        shutil.rmtree(abandoned, ignore_errors=True)


def load_extension(path):
    """Import the extension module at ``path`` and return it.

    The module is registered in ``sys.modules`` under its file's module name; a module already there
    under that name is returned as it is, so a hashed name is never loaded twice.
    """
    path = pathlib.Path(path)
    name = path.name.split(".", 1)[0]
    with _load_lock:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None:
            raise BuildError(f"{path} is not an extension module")
        try:
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except ImportError as error:
            sys.modules.pop(name, None)
            raise BuildError(f"cannot load {path}: {error}") from error
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module


def build_and_load(source, stem, *, directory=None, progress=None):
    """Build ``source`` (see :func:`build_extension`) and return the loaded module."""
    return load_extension(build_extension(source, stem, directory=directory, progress=progress))


def _derive_version():
    """Return ``derive.__version__``, or ``"0"`` while derive has none."""
    try:
        from derive import __version__
    except ImportError:
        return "0"
    return __version__


def _cython_options():
    """Return the directives of the Cython step (derive.directives: release, or debug with checks on)."""
    return [option for name, value in sorted(directives().items()) for option in ("-X", f"{name}={value}")]


def _compiler():
    """Return the C compiler command Python was built with, as a list."""
    return shlex.split(sysconfig.get_config_var("CC"))


def _linker():
    """Return the command that links a shared extension module, as a list."""
    return shlex.split(sysconfig.get_config_var("LDSHARED"))


def _make_dir(path):
    """Create ``path`` (mode 0o700) if it does not exist, and return it; BuildError if it cannot be."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise BuildError(f"cannot use {path} as the folder of compiled modules: {error.strerror or error} "
                         "(DERIVE_CACHE_DIR chooses another)") from error
    return path


def _report(progress, message):
    """Pass ``message`` to the ``progress`` callback, if there is one."""
    if progress is not None:
        progress(message)


@contextlib.contextmanager
def file_lock(lock_path, name, progress=None):
    """Hold an exclusive ``flock`` on ``lock_path`` for the ``with`` block.

    Every call opens the file anew, and ``flock`` locks of separate opens exclude each other even
    within one process, so this serialises threads as well as processes. The lock file is left in
    place: deleting it could let a waiting process lock a file no one else sees.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _report(progress, f"waiting for another build of {name}…")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build(source, name, target, progress):
    """Compile ``source`` as module ``name`` in a temporary directory and move it to ``target``."""
    start = time.perf_counter()
    work = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=f".build-{name}-"))
    try:
        pyx, c_file, o_file = (work / (name + suffix) for suffix in (".pyx", ".c", ".o"))
        built = work / target.name
        pyx.write_text(source, encoding="utf-8")
        _report(progress, f"cythonizing {name}…")
        _run([sys.executable, "-m", "cython", "-3", "--fast-fail", *_cython_options(),
              "--module-name", name, pyx.name, "-o", c_file.name], work, "Cython failed")
        _report(progress, f"compiling {name}…")
        _run([*_compiler(), *compiler_flags(), *_include_flags(),
              "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION", "-c", c_file.name, "-o", o_file.name],
             work, "the C compiler failed")
        # libraries after the object: with --as-needed, a library named before it would be dropped
        _run([*_linker(), o_file.name, *link_flags(), "-o", built.name], work, "linking failed")
        os.replace(built, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _report(progress, f"done in {time.perf_counter() - start:.1f} s")


def _include_flags():
    """Return ``-I`` flags for Python's and NumPy's C headers."""
    return ["-I" + sysconfig.get_paths()["include"], "-I" + numpy.get_include()]


def _run(command, cwd, failure):
    """Run ``command`` in ``cwd``; raise :class:`BuildError` with its output if it fails."""
    try:
        result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", check=False)
    except OSError as error:
        raise BuildError(f"{failure}: cannot run {command[0]}", command=command, output=str(error)) from error
    if result.returncode != 0:
        raise BuildError(failure, command=command, output=result.stdout)
