"""Time limits on symbolic work, so that a user's expression can never hang derive.

SymPy's simplification of an adversarial expression can take arbitrarily long. The symbolic stages run
under :func:`time_limit`, which raises :class:`~derive.errors.DerivationError` when the limit passes
(``DERIVE_TIME_LIMIT`` seconds, default 60; ``0`` disables it), or when SymPy exhausts Python's
recursion limit or memory. The limit uses SIGALRM, so it applies in
the main thread of a Unix process; elsewhere the work runs unlimited.
"""
import os
import signal
import threading
from contextlib import contextmanager

from .errors import DerivationError

DEFAULT_SECONDS = 60.0
REPEAT_SECONDS = 0.05


def limit_seconds():
    """The limit in force: ``DERIVE_TIME_LIMIT`` (seconds; 0 = none), else 60."""
    text = os.environ.get("DERIVE_TIME_LIMIT", "")
    try:
        return float(text) if text else DEFAULT_SECONDS
    except ValueError:
        raise DerivationError("DERIVE_TIME_LIMIT must be a number of seconds, got %r" % text) from None


@contextmanager
def time_limit(what, seconds=None):
    """Run the body, raising DerivationError("<what> took longer than N s ...") past the limit."""
    seconds = limit_seconds() if seconds is None else seconds
    usable = (seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)  # never override an outer timer
    if not usable:
        with _within_python_limits(what):
            yield
        return

    body = {"running": True, "expired": False}
    message = ("%s took longer than %g s and was stopped; simplify the expression, or raise the limit with "
               "DERIVE_TIME_LIMIT=<seconds>" % (what, seconds))

    def expire(signum, frame):
        if body["running"]:
            body["expired"] = True
            raise DerivationError(message)

    previous = signal.signal(signal.SIGALRM, expire)
    # After the limit the alarm repeats every REPEAT_SECONDS: SymPy code that catches and drops one
    # exception (broad `except` clauses exist in it) cannot keep the body running past the limit.
    signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_SECONDS)
    try:
        with _within_python_limits(what):
            yield
    except DerivationError:
        raise
    except Exception as error:
        if body["expired"]:     # SymPy code that caught the interruption raised an error of its own instead
            raise DerivationError(message) from error
        raise
    finally:
        body["running"] = False      # first: an alarm from here on is ignored, never raised in cleanup
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _within_python_limits(what):
    """Run the body, raising DerivationError where SymPy runs out of Python's recursion limit or of memory
    (an expression nested some hundred levels deep, say) instead of letting RecursionError through."""
    try:
        yield
    except (RecursionError, MemoryError) as error:
        raise DerivationError("%s needs more than Python allows (%s): the expression is too deeply nested or "
                              "too large; simplify it" % (what, type(error).__name__)) from None
