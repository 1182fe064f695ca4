"""Names of user activations: what ``derive generate NAME EXPRESSION`` registers.

In:  a name (a Python identifier that is not a built-in activation, not a name of the expression language
     (``a``, ``pi``, ``E``, ``exp``, ``Piecewise``, ...) and not of the form ``expr_...`` that unnamed
     expressions take) and the expression text it stands for.
Out: the expression text of a registered name, so that the name can be used wherever an activation is
     accepted (``derive check NAME``, ``derive show NAME``, ``derive.MLP(..., activation=NAME)``).

The names live in ``names.json`` in derive's cache folder (:func:`derive.build.cache_path`), beside the
modules compiled for them: a name is a setting of this user on this machine, as the cache is. A change
reads and rewrites the file under a lock (``names.lock``) and replaces it atomically, so concurrent
``generate`` runs lose no name and a reader sees the old names or the new ones; a name registered again
stands for its new expression.
"""
import json

from .errors import DeriveError, SpecificationError
from .expressions import LANGUAGE_NAMES, check_identifier
from .specification import ACTIVATIONS, UNNAMED_PREFIX

FILE = "names.json"
_LOCK = "names.lock"


def problem(name):
    """Why ``name`` cannot be registered, or None if it can (see the module's docstring)."""
    try:
        check_identifier(name, "activation name")
    except DeriveError as error:
        return str(error)
    if name in ACTIVATIONS:
        return "%r is a built-in activation; choose another name" % name
    if name in LANGUAGE_NAMES:
        return ("%r is a name of the expression language (a variable, constant or function); choose another "
                "name" % name)
    if name.startswith(UNNAMED_PREFIX):
        return "%r looks like the name of an unnamed expression (%s<hash>); choose another name" % (
            name, UNNAMED_PREFIX)
    return None


def check_name(name):
    """Raise SpecificationError unless ``name`` may be registered."""
    reason = problem(name)
    if reason is not None:
        raise SpecificationError(reason)


def registered():
    """{name: expression text} of every registered name ({} where none is, or there is no cache folder);
    SpecificationError, naming the file, where it cannot be read or is not one that derive wrote."""
    path = _path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise SpecificationError("cannot read the activation names in %s: %s (remove it, or let "
                                 "DERIVE_CACHE_DIR choose another folder)" % (path, reason)) from None
    try:
        names = json.loads(text)
    except ValueError:
        names = None
    if not (isinstance(names, dict) and all(isinstance(k, str) and isinstance(v, str) and problem(k) is None
                                            for k, v in names.items())):
        raise SpecificationError("%s is not a file of activation names that derive wrote (a JSON object of "
                                 "name: expression); remove it and register the names again with "
                                 "`derive generate`" % path)
    return names


def lookup(name):
    """The expression text registered as ``name``, or None."""
    return registered().get(name)


def register(name, expression):
    """Register ``name`` for the expression text ``expression`` (replacing what it stood for before)."""
    from .build import cache_dir, file_lock
    from .resources import write_atomically
    check_name(name)
    folder = cache_dir()
    with file_lock(folder / _LOCK, FILE):
        names = registered()
        names[name] = expression
        write_atomically(folder / FILE, json.dumps(names, indent=1, sort_keys=True) + "\n")


def _path():
    from .build import cache_path
    return cache_path() / FILE
