"""Names of user activations: what ``derive generate NAME EXPRESSION`` registers.

In:  a name (a Python identifier that is not a built-in activation, nor one of the expression
     language's own names ``a``, ``pi`` and ``E``) and the expression text it stands for.
Out: the expression text of a registered name, so that the name can be used wherever an activation is
     accepted (``derive check NAME``, ``derive show NAME``, ``derive.MLP(..., activation=NAME)``).

The names live in ``names.json`` in derive's cache folder (:func:`derive.build.cache_path`), beside the
modules compiled for them: a name is a setting of this user on this machine, as the cache is. The file is
replaced atomically, so a reader sees the old names or the new ones; the last ``generate`` of a name wins.
"""
import json

from .errors import SpecificationError
from .expressions import check_identifier

FILE = "names.json"

#: Identifiers that mean something of their own in an expression: never names of activations.
RESERVED = frozenset({"a", "pi", "E"})


def check_name(name):
    """Raise SpecificationError unless ``name`` may be registered (see the module's docstring)."""
    from .specification import ACTIVATIONS
    check_identifier(name, "activation name")
    if name in ACTIVATIONS:
        raise SpecificationError("%r is a built-in activation; choose another name" % name)
    if name in RESERVED:
        raise SpecificationError("%r means something of its own in an expression (the variable 'a', the "
                                 "constants 'pi' and 'E'); choose another name" % name)


def registered():
    """{name: expression text} of every registered name ({} where none is, or there is no cache folder)."""
    path = _path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise SpecificationError("cannot read the activation names in %s: %s (DERIVE_CACHE_DIR chooses another "
                                 "folder)" % (path, error.strerror or error))
    try:
        names = json.loads(text)
    except ValueError:
        names = None
    if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in names.items()):
        raise SpecificationError("%s is not a file of activation names that derive wrote (a JSON object of "
                                 "name: expression); remove it and register the names again with "
                                 "`derive generate`" % path)
    return names


def lookup(name):
    """The expression text registered as ``name``, or None."""
    return registered().get(name)


def register(name, expression):
    """Register ``name`` for the expression text ``expression`` (replacing what it stood for before)."""
    from .build import cache_dir
    from .resources import write_atomically
    check_name(name)
    names = registered()
    names[name] = expression
    write_atomically(cache_dir() / FILE, json.dumps(names, indent=1, sort_keys=True) + "\n")


def _path():
    from .build import cache_path
    return cache_path() / FILE
