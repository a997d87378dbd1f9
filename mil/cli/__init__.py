"""The `mil` command. Thin: each command module resolves its config, calls one library function, prints.

Commands are registered here only once they work (a command in `mil --help` is a promise). Heavy imports
(torch, zarr, openslide) happen inside the commands so `mil --help` stays fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

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
    """Entry point: expected failures (`MilError`) become one red line and exit code 2; `--debug` shows tracebacks."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    try:
        app(args, prog_name="mil")
    except MilError as exc:
        if debug:
            raise
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
