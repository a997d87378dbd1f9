"""The `mil` command. Thin: each command module resolves its config, calls one library function, prints.

Commands are registered here only once they work (a command in `mil --help` is a promise). Heavy imports
(torch, zarr, openslide) happen inside the commands so `mil --help` stays fast.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from features.core.errors import MilError

app = typer.Typer(
    name="mil",
    help="Slide-level diagnosis of bone-marrow and blood smears by multiple-instance learning over cells.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

# Exit codes, one meaning each (extract/heatmap use PARTIAL when some slides failed and the rest succeeded).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """Slide-level diagnosis of bone-marrow and blood smears by multiple-instance learning over cells.

    Add --debug anywhere to see full tracebacks.
    """
    if version:
        from mil import __version__

        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def _register() -> None:
    from mil.cli import bags, config_cmd, evaluate, extract, list_cmd, train

    list_cmd.register(app)
    evaluate.register(app)
    extract.register(app)
    bags.register(app)
    train.register(app)
    config_cmd.register(app)
    from mil.cli import synth

    synth.register(app)
    from mil.cli import demo

    demo.register(app)
    from mil.cli import heatmap, report

    heatmap.register(app)
    report.register(app)
    from mil.cli import cells

    cells.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point. No traceback reaches a user without `--debug`: an expected failure (`MilError`) or a path
    the system refuses (permissions, a folder where a file goes, a full disk) is one red line and exit 2; any
    other exception is a bug: one line, a hint to rerun with `--debug`, exit 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    try:
        app(args, prog_name="mil")
    except MilError as exc:
        if debug:
            raise
        _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        if debug:
            raise
        message = os_error_line(exc)
        if message is None:
            _fail(_bug_line(exc), EXIT_FAILED)
        _fail(message, EXIT_USAGE)
    except Exception as exc:  # the last net: a bug, shown as one line
        if debug:
            raise
        _fail(_bug_line(exc), EXIT_FAILED)


# errno -> what to do about it, for the OSErrors a user's path causes (anything else is a bug).
_PATH_FIXES = {
    errno.EACCES: "check its permissions, or choose a path you can write to",
    errno.EPERM: "check its permissions, or choose a path you can write to",
    errno.EROFS: "choose an output on a writable disk",
    errno.EISDIR: "give a file path, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.ENOSPC: "free some space or choose an output on another disk",
    errno.EDQUOT: "free some space or choose an output on another disk",
    errno.ENOENT: "check the path",
    errno.EEXIST: "choose another output or pass --overwrite",
}
# Staging names (`features.core.io.atomic_write`, `features.core.outputs`): report the folder they live in.
_STAGING = re.compile(r"^\..+(\.tmp|[.](tmp|old)~.+)$")


def os_error_line(exc: OSError) -> str | None:
    """One line naming the path the system refused and the fix, or None when it is not about a path."""
    fix = _PATH_FIXES.get(exc.errno)
    if fix is None:
        return None
    what = (exc.strerror or "").lower()
    if not isinstance(exc.filename, str | bytes | os.PathLike):  # none, or a file descriptor
        return f"{what}; {fix}" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None
    path = Path(os.fsdecode(exc.filename))
    if _STAGING.match(path.name):
        return f"cannot write in {path.parent} ({what}); {fix}"
    return f"{path}: {what}; {fix}"


def _bug_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"unexpected {type(exc).__name__}: {first} (a bug in mil; rerun with --debug for the traceback)"


def _fail(message: str, code: int) -> None:
    # escaped: a message may hold brackets (a file `scan[1].svs`, `pip install -e '.[ray]'`), not markup
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)
