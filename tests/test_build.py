"""Tests of derive.build: compiling Cython source text into cached extension modules."""

import os
import pathlib
import shlex
import subprocess
import sys
import sysconfig
import threading

import numpy
import pytest

from derive import build
from derive.errors import BuildError

PROJECT = pathlib.Path(__file__).resolve().parents[1]

SOURCE = '''
cimport numpy as cnp
from scipy.linalg.cython_blas cimport ddot

cnp.import_array()


def f(double x):
    return 2 * x


def size(cnp.ndarray a):
    return cnp.PyArray_SIZE(a)


def dot(double[::1] a, double[::1] b):
    cdef int n = a.shape[0], one = 1
    return ddot(&n, &a[0], &one, &b[0], &one)
'''

SMALL = "def f(double x):\n    return 2 * x\n"

SYNTAX_ERROR = "def f(double x)\n    return 2 * x\n"

C_ERROR = '''
cdef extern from *:
    """
    #error boom
    """

def f():
    pass
'''

TWIN_SCRIPT = """
import sys
from derive.build import build_and_load
messages = []
module = build_and_load(sys.argv[1], "twin", directory=sys.argv[2], progress=messages.append)
print(module.__file__)
print(module.f(2.0))
print(any(m.startswith("cythonizing") for m in messages))
"""


@pytest.fixture(autouse=True)
def release_build(monkeypatch):
    """Run every test with release builds, whatever the caller's environment says."""
    monkeypatch.delenv("DERIVE_DEBUG_BUILD", raising=False)


def leftovers(directory):
    """Return the names of built modules and temporary build directories in ``directory``."""
    names = (path.name for path in directory.iterdir())
    return sorted(name for name in names if name.endswith(".so") or name.startswith(".build-"))


def fail_if_run(*args, **kwargs):
    """Stand in for subprocess.run where nothing may be compiled."""
    raise AssertionError(f"unexpected subprocess: {args}")


def test_builds_loads_and_uses_cimports(tmp_path):
    messages = []
    module = build.build_and_load(SOURCE, "double", directory=tmp_path, progress=messages.append)
    assert module.f(3.0) == 6.0
    assert module.size(numpy.zeros((2, 3))) == 6
    assert module.dot(numpy.array([1.0, 2.0]), numpy.array([3.0, 4.0])) == 11.0
    assert pathlib.Path(module.__file__).parent == tmp_path
    assert module.__name__ == f"double_{build.cache_key(SOURCE)}"
    assert any(m.startswith("cythonizing") for m in messages)
    assert messages[-1].startswith("done in")
    assert build.load_extension(pathlib.Path(module.__file__)) is module


def test_second_build_compiles_nothing(tmp_path, monkeypatch):
    path = build.build_extension(SMALL, "small", directory=tmp_path)
    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(subprocess, "run", fail_if_run)
    messages = []
    assert build.build_extension(SMALL, "small", directory=tmp_path, progress=messages.append) == path
    assert path.stat().st_mtime_ns == mtime
    assert messages == []
    assert leftovers(tmp_path) == [path.name]


def test_cache_key_depends_on_source_and_debug(monkeypatch):
    key = build.cache_key(SMALL)
    assert len(key) == 16 and int(key, 16) >= 0
    assert build.cache_key(SMALL) == key
    assert build.cache_key(SMALL + "\n") != key
    monkeypatch.setenv("DERIVE_DEBUG_BUILD", "1")
    assert build.cache_key(SMALL) != key
    assert build.compiler_flags()[:2] == ["-O0", "-g"]
    monkeypatch.delenv("DERIVE_DEBUG_BUILD")
    assert build.cache_key(SMALL) == key
    assert "-O3" in build.compiler_flags()


def test_cython_error_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(BuildError) as caught:
        build.build_extension(SYNTAX_ERROR, "broken", directory=tmp_path)
    assert "cython" in caught.value.command
    assert "Expected ':'" in caught.value.output
    assert leftovers(tmp_path) == []


def test_compiler_error_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(BuildError) as caught:
        build.build_extension(C_ERROR, "boom", directory=tmp_path)
    assert caught.value.command[0] == shlex.split(sysconfig.get_config_var("CC"))[0]
    assert "boom" in caught.value.output
    assert leftovers(tmp_path) == []


def test_interrupted_build_leaves_nothing_and_can_be_retried(tmp_path, monkeypatch):
    compiler = shlex.split(sysconfig.get_config_var("CC"))[0]
    real_run = subprocess.run

    def interrupt_compiler(command, *args, **kwargs):
        if command[0] == compiler:
            raise KeyboardInterrupt
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", interrupt_compiler)
    with pytest.raises(KeyboardInterrupt):
        build.build_extension(SMALL, "interrupted", directory=tmp_path)
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    path = build.build_extension(SMALL, "interrupted", directory=tmp_path)
    assert leftovers(tmp_path) == [path.name]


def test_two_processes_build_the_same_source_once(tmp_path):
    source = SMALL + "# twin\n"
    python_path = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=python_path)
    command = [sys.executable, "-c", TWIN_SCRIPT, source, str(tmp_path)]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    results = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], results
    lines = [out.split() for out, _ in results]
    assert lines[0][0] == lines[1][0]
    assert [line[1] for line in lines] == ["4.0", "4.0"]
    assert sorted(line[2] for line in lines) == ["False", "True"]
    assert leftovers(tmp_path) == [pathlib.Path(lines[0][0]).name]


def test_two_threads_build_the_same_source_once(tmp_path):
    source = SMALL + "# threads\n"
    messages, paths = [], []

    def work():
        paths.append(build.build_extension(source, "threads", directory=tmp_path, progress=messages.append))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 2 and paths[0] == paths[1]
    assert sum(m.startswith("cythonizing") for m in messages) == 1


def test_cache_dir_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_CACHE_DIR", str(tmp_path / "cache"))
    assert build.cache_dir() == tmp_path / "cache"
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    path = build.build_extension(SMALL + "# default directory\n", "cached")
    assert path.parent == tmp_path / "cache"
    monkeypatch.delenv("DERIVE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_dir() == tmp_path / "xdg" / "derive"
