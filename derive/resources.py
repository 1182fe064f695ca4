"""Where derive's data folders are, installed or in a source checkout; and how files are written.

An installed package carries its data as ``derive/templates`` and ``derive/generated``; in a source
checkout the same folders are the repository's top-level ``templates/`` and ``generated/``.
"""
import os
import tempfile
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name):
    """The folder ``name`` ("templates" or "generated"): inside the package if installed there, else
    the one next to the package in the source tree."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def write_atomically(path, data):
    """Write ``data`` (str as UTF-8, or bytes) to ``path`` through a temporary file in the same folder
    and ``os.replace``: the path holds the old file or the new one, never half of one. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    handle, temporary = tempfile.mkstemp(dir=str(path.parent), prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
