"""The ``derive`` command: list, show, generate and check activations.

    derive list
    derive show NAME_OR_EXPRESSION [--loss sse|bce|ce] [--format tex|md|pdf] [--output PATH]
    derive generate NAME EXPRESSION [--out DIR]      (and registers NAME, see derive.names)
    derive check NAME_OR_EXPRESSION [--loss sse|bce|ce|all] [--sizes 4,8,3] [--samples N] [--seed S]

Errors that derive raises on purpose (bad expressions, names, build failures) and errors of the file
system (an output path that cannot be written) are printed as one clear message with exit status 2; a
failed check exits with status 1.
"""
import argparse
import sys
from pathlib import Path

from . import __version__, names
from .errors import DeriveError
from .specification import ACTIVATIONS, LOSSES, Activation, resolve_activation


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (DeriveError, ValueError, TypeError) as error:
        print("derive: error: %s" % error, file=sys.stderr)
        return 2
    except OSError as error:   # e.g. an output folder that cannot be created
        print("derive: error: %s" % error, file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(prog="derive", description="Exact second derivatives of feed-forward "
                                     "networks, derived by SymPy and compiled (PRML §5.3–5.4).")
    parser.add_argument("--version", action="version", version="derive " + __version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="built-in, named and cached activations")
    listing.set_defaults(run=_list)

    show = commands.add_parser("show", help="print or write the derivation document of an activation")
    show.add_argument("activation",
                      help="a built-in or generated name, or an expression in a, e.g. \"a*sigmoid(a)\"")
    show.add_argument("--loss", choices=list(LOSSES), default="sse")
    show.add_argument("--format", choices=["tex", "md", "pdf"], default="md")
    show.add_argument("--output", type=Path, help="file to write (default: print tex/md; pdf: ./<name>.pdf)")
    show.set_defaults(run=_show)

    generate = commands.add_parser("generate",
                                   help="derive, write .pyx/.tex/.md, compile and name a new activation")
    generate.add_argument("name", help="a Python identifier, not a built-in name; registered for check, show and "
                          "derive.MLP")
    generate.add_argument("expression", help="h(a), e.g. \"a*tanh(log(1 + exp(a)))\"")
    generate.add_argument("--out", type=Path, default=Path("."), help="folder for the files (default: .)")
    generate.set_defaults(run=_generate)

    check = commands.add_parser("check", help="every kernel against finite differences on random networks")
    check.add_argument("activation", help="a built-in or generated name, or an expression in a")
    check.add_argument("--loss", choices=list(LOSSES) + ["all"], default="all")
    check.add_argument("--sizes", default=None, help="layer sizes, e.g. 4,8,3 (default: L = 1, 2, 3 networks)")
    check.add_argument("--samples", type=_count(1), default=6, help="samples N (default: 6)")
    check.add_argument("--seed", type=_count(0), default=0, help="seed of the random networks (default: 0)")
    check.set_defaults(run=_check)
    return parser


def _list(args):
    from .build import cache_dir
    print("built-in activations:")
    for name, activation in ACTIVATIONS.items():
        print("  %-11s h(a) = %s" % (name, activation.expression))
    print("named by `derive generate`:")
    try:
        registered, unreadable = names.registered(), None
    except DeriveError as error:
        registered, unreadable = {}, error
    for name, expression in sorted(registered.items()):
        print("  %-11s h(a) = %s" % (name, expression))
    if not registered:
        print("  (none)" if unreadable is None else "  (unreadable, see below)")
    cached = sorted(p.name.split(".")[0] for p in cache_dir().glob("*.so"))
    print("compiled in the cache (%s):" % cache_dir())
    for name in cached or ["(none)"]:
        print("  " + name)
    if unreadable is not None:
        raise unreadable


def _show(args):
    from .derivation import derivation
    from .latex import compile_pdf
    d = derivation(args.activation, args.loss)
    if args.format == "pdf":
        output = args.output or Path(d.activation.name + ".pdf")
        _refuse_to_overwrite(output.with_suffix(".pdf"))
        tex = _write(output.with_suffix(".tex"), d.latex())
        pdf = compile_pdf(tex, output.parent)
        print("wrote %s" % pdf)
        return
    text = d.latex() if args.format == "tex" else d.markdown()
    if args.output:
        print("wrote %s" % _write(args.output, text))
    else:
        sys.stdout.write(text)


def _write(path, text):
    from .resources import write_atomically
    _refuse_to_overwrite(path)
    return write_atomically(path, text)


def _refuse_to_overwrite(path):
    """Nothing a user wrote is overwritten: only regular files that derive generated itself (they carry its
    mark, see _generated_by_derive) may be replaced; a folder, device or pipe at ``path`` is refused
    without reading it."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        raise DeriveError("%s exists and is not a regular file; not writing to it" % path)
    if not _generated_by_derive(path):
        raise DeriveError("%s exists and was not generated by derive; not overwriting it" % path)


def _generated_by_derive(path, mark=b"Generated by derive", head=4096, tail=2**20):
    """Whether the regular file at ``path`` carries derive's mark in its first ``head`` bytes (the first
    lines of a generated .pyx, .tex or .md) or its last ``tail`` bytes (the Creator entry of a PDF of
    derive's document, which pdfTeX writes before the cross-reference table at the end)."""
    with open(path, "rb") as existing:
        if mark in existing.read(head):
            return True
        size = existing.seek(0, 2)
        existing.seek(max(0, size - tail))
        return mark in existing.read(tail)


def _generate(args):
    from .codegen import render_activation
    from .derivation import derivation
    from .kernels import load
    names.check_name(args.name)
    names.registered()           # a names file that cannot be read or updated stops us before anything is done
    activation = Activation.from_expression(args.expression, name=args.name)
    d = derivation(activation, "sse")
    files = {args.out / (activation.name + suffix): text
             for suffix, text in ((".pyx", render_activation(activation)), (".tex", d.latex()),
                                  (".md", d.markdown()))}
    for path in files:           # every target first: a refusal leaves all of them as they were
        _refuse_to_overwrite(path)
    # compiled before anything is written: a failed build leaves the previous files in place
    module = load(activation, progress=lambda message: print("  " + message, flush=True))
    print("compiled %s" % module.__file__)
    for path, text in files.items():
        print("wrote %s" % _write(path, text))
    names.register(activation.name, args.expression)
    print("registered %r: `derive check %s`, `derive show %s` and derive.MLP(..., activation=%r) use it"
          % (activation.name, activation.name, activation.name, activation.name))


def _check(args):
    from .check import check_network
    activation = resolve_activation(args.activation)
    losses = list(LOSSES) if args.loss == "all" else [args.loss]
    if args.sizes is not None:
        shapes = [_sizes(args.sizes)]
    else:
        shapes = [[4, 3], [4, 8, 3], [3, 5, 4, 3]]
    failed = 0
    print("derive check: activation %s, h(a) = %s" % (activation.name, activation.expression or activation.expr))
    print("%-5s %-14s %-12s %-44s %10s %8s  %s" % ("loss", "sizes", "kernel", "reference", "rel.error",
                                                  "tol", "result"))
    for loss in losses:
        for sizes in shapes:
            net, results = check_network(activation, loss, sizes, args.samples, args.seed)
            for r in results:
                failed += not r.passed
                print("%-5s %-14s %-12s %-44s %10.2e %8.0e  %s" % (loss, ",".join(map(str, sizes)), r.kernel,
                                                                  r.reference, r.error, r.tolerance,
                                                                  "ok" if r.passed else "FAILED"))
    print("all kernels agree with their references" if not failed else "%d check(s) FAILED" % failed)
    return 1 if failed else 0


def _sizes(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise DeriveError("--sizes must be at least two positive integers separated by commas, e.g. 4,8,3; "
                          "got %r" % text)
    return sizes


def _count(least):
    """An argparse type: an integer >= ``least`` (argparse names the option in its error)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError("an integer >= %d is needed, got %r" % (least, text))
        return value
    return parse


if __name__ == "__main__":
    sys.exit(main())
