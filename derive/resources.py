"""Where derive's data folders are, installed or in a source checkout.

An installed package carries its data as ``derive/templates`` and ``derive/generated``; in a source
checkout the same folders are the repository's top-level ``templates/`` and ``generated/``.
"""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name):
    """The folder ``name`` ("templates" or "generated"): inside the package if installed there, else
    the one next to the package in the source tree."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
