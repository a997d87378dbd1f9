"""`mil extract`: slides, cell-image folders or h5 feature files -> a bag store. Thin: resolve the config,
call `features.pipeline.extract.extract` once, show its progress and a summary table."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from features.pipeline.config import ExtractConfig
from mil.cli.options import (
    address_option,
    config_option,
    engine_option,
    field_option,
    set_option,
    typed_flags,
)
from mil.cli.progress import Steps

RANDOM_LINE = (
    "[bold red]RANDOM ENCODER WEIGHTS: these embeddings carry no learned features (tests and timing only)[/]"
)


class ProgressView:
    """Overall slides bar plus one line per slide in flight (several with loader workers)."""

    def __init__(self, console: Console):
        self.console = console
        self.steps = Steps(console)
        self.overall: int | None = None
        self.slides: dict[str, int] = {}

    def __call__(self, event: str, **info: Any) -> None:
        steps = self.steps
        if event == "start":
            if info["random_weights"]:
                self.console.print(RANDOM_LINE)
            self.console.print(
                f"{info['total']} slide(s): {info['todo']} to extract, {info['skipped']} already done; "
                f"encoder {info['encoder'].describe()}",
                highlight=False,
                soft_wrap=True,
            )
            steps.start()
            self.overall = steps.add("slides", total=info["todo"])
        elif event == "engine":  # where the work runs (Ray: the cluster and the plan of loaders and encoders)
            steps.print(info["text"])
        elif event == "slide_start":
            self.slides[info["slide_id"]] = steps.add(f"  {info['slide_id']}: open")
        elif event == "slide_stage" and info["slide_id"] in self.slides:
            total = info["info"].get("total")
            steps.update(
                self.slides[info["slide_id"]],
                description=f"  {info['slide_id']}: {info['stage']}",
                total=total,
            )
        elif event == "slide_instances" and info["slide_id"] in self.slides:
            steps.update(
                self.slides[info["slide_id"]],
                completed=info["done"],
                description=f"  {info['slide_id']}: encode",
            )
        elif event == "slide_notice":  # one input of a slide left out (a patient's bad field); the rest go on
            steps.print(f"[yellow]left out[/] {info['message']}")
        elif event == "slide_done":
            outcome = info["outcome"]
            task = self.slides.pop(outcome.slide_id, None)
            if task is not None:
                steps.remove(task)
            if outcome.status == "failed":
                steps.print(f"[red]failed[/] {outcome.message}")
            if outcome.status != "skipped" and self.overall is not None:
                steps.update(self.overall, advance=1)

    def stop(self) -> None:
        self.steps.stop()


def summary_table(summary: Any) -> Table:
    """One short row per slide; failure messages (long paths) are printed in full below, by `failure_lines`."""
    table = Table(title=f"mil extract -> {summary.store}", title_justify="left")
    for col in ("slide", "patient", "status", "instances", "seconds"):
        table.add_column(col, justify="right" if col in ("instances", "seconds") else "left")
    style = {"written": "green", "skipped": "cyan", "failed": "red"}
    for o in summary.outcomes:
        table.add_row(
            o.slide_id,
            o.patient_id,
            f"[{style[o.status]}]{o.status}[/]",
            str(o.instances),
            f"{o.seconds:.1f}" if o.status != "skipped" else "",
        )
    counts = ", ".join(f"{summary.count(s)} {s}" for s in ("written", "skipped", "failed"))
    left_out = f" ({summary.left_out} inputs left out)" if summary.left_out else ""
    table.caption = f"{counts}; {summary.instances} instances written{left_out} in {summary.seconds:.1f} s"
    return table


def failure_lines(summary: Any) -> list[str]:
    """Each failed slide's message whole, on one line (a table column would wrap a long path to pieces)."""
    return [
        o.message if o.message.startswith(o.slide_id) else f"{o.slide_id}: {o.message}"
        for o in summary.outcomes
        if o.status == "failed"
    ]


def notice_lines(summary: Any) -> list[str]:
    """Bags written with some inputs left out (an unreadable cell image, an unusable field):
    `<slide>: k input(s) left out`, then each input and why, indented."""
    lines = []
    for o in summary.outcomes:
        if o.status == "written" and o.left_out:
            lines += [f"{o.slide_id}: {o.message}", *(f"  {line}" for line in (o.detail or "").splitlines())]
    return lines


def exit_code(summary: Any) -> int:
    """0: every slide written or skipped; 3: some failed, the rest done; 1: the run did nothing (every slide
    failed, it stopped at a failure, its shard was empty). Bad input found while planning (no such path,
    nothing to extract in it, a malformed manifest) never gets here: it is an `InputError`, exit 2 in `main`."""
    from mil.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL

    done = summary.count("written") + summary.count("skipped")
    if summary.stopped_early or done == 0:
        return EXIT_FAILED
    return EXIT_PARTIAL if summary.count("failed") else EXIT_OK


def print_summary(console: Console, summary: Any) -> None:
    """The table, then each failure and each bag written with inputs left out in full, then what else the
    run has to say (nothing done, notes on the bags written, random weights, stale entries swept, stopped
    early)."""
    if summary.outcomes:
        console.print(summary_table(summary))
    failures = failure_lines(summary)
    if failures:
        console.print(f"[red]failures[/] ({len(failures)}):", highlight=False)
        for line in failures:
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    notices = notice_lines(summary)
    if notices:
        bags = sum(not line.startswith(" ") for line in notices)
        console.print(f"[yellow]written with inputs left out[/] ({bags}):", highlight=False)
        for line in notices:
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    if summary.message:
        console.print(f"[red]nothing extracted:[/] {summary.message}", highlight=False, soft_wrap=True)
    for line in summary.notes:  # what to know of the bags written (h5 imported without an mpp)
        console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if summary.encoder is not None and summary.encoder.weights_sha256 == "random":
        console.print(RANDOM_LINE)
    if summary.swept:
        console.print(
            f"removed {len(summary.swept)} unfinished bag(s) left by an earlier run", highlight=False
        )
    if summary.repaired:
        console.print(f"[yellow]re-extracted {len(summary.repaired)} damaged bag(s)[/]:", highlight=False)
        for line in summary.repaired:
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    if summary.closed_runs:
        console.print(
            f"marked {len(summary.closed_runs)} earlier run record(s) as killed (their process is gone)",
            highlight=False,
        )
    if summary.stopped_early:
        console.print("[red]stopped at the first failure (--no-skip-errors)[/]")


def register(app: typer.Typer) -> None:
    @app.command("extract")
    def extract_cmd(
        ctx: typer.Context,
        input: Path = typer.Argument(
            ...,
            help="Folder of slides, of per-patient folders of cell images or of microscope fields, or of .h5 "
            "feature files; one slide or .h5 file; or a .csv manifest.",
        ),
        output: Path = typer.Option(..., "-o", "--output", help="Bag store (a folder, e.g. bags.zarr)."),
        encoder: str = field_option(ExtractConfig, "encoder", "--encoder"),
        weights: str = field_option(ExtractConfig, "weights", "--weights"),
        unit: str = field_option(ExtractConfig, "unit", "--unit"),
        mpp: float = field_option(ExtractConfig, "mpp", "--mpp"),
        source: str = field_option(ExtractConfig, "source", "--source"),
        shard: str = typer.Option(
            "0/1", "--shard", help="i/N: this process takes slides i, i+N, ... (sorted by id)."
        ),
        config: str = config_option(),
        set_: list[str] = set_option(),
        device: str = field_option(ExtractConfig, "device", "--device"),
        batch_size: int = field_option(ExtractConfig, "batch_size", "--batch-size"),
        workers: int = field_option(ExtractConfig, "workers", "--workers"),
        max_instances: int = field_option(ExtractConfig, "max_instances", "--max-instances"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing bags."),
        skip_errors: bool = field_option(ExtractConfig, "skip_errors", "--skip-errors/--no-skip-errors"),
        engine: str = engine_option(),
        address: str = address_option(),
        loaders: int = typer.Option(
            None,
            "--loaders",
            min=1,
            help="With --engine ray: loader tasks at once (default: the cluster's CPUs left; --workers is the local engine's).",
        ),
        gpus_per_encoder: float = typer.Option(
            None,
            "--gpus-per-encoder",
            min=0,
            help="With --engine ray: GPUs per encoder actor, one actor per share (default: 1 where there are GPUs).",
        ),
        strict: bool = field_option(ExtractConfig, "strict", "--strict"),
    ) -> None:
        """Extract one bag of embeddings per slide (or import .h5 features) into a bag store."""
        from features.encoders import RandomWeightsWarning
        from features.pipeline.engines import create_engine
        from features.pipeline.extract import extract, parse_shard
        from mil.config import load_config

        cfg = load_config(config, set_, typed_flags(ctx, "extract")).extract
        runner = create_engine(engine, address=address, loaders=loaders, gpus_per_encoder=gpus_per_encoder)
        console = Console()
        view = ProgressView(console)
        with warnings.catch_warnings():
            # The view prints the random-weights line in bold red at the start of every run instead.
            warnings.simplefilter("ignore", RandomWeightsWarning)
            try:
                summary = extract(
                    input,
                    output,
                    cfg,
                    shard=parse_shard(shard),
                    overwrite=overwrite,
                    progress=view,
                    command=" ".join(["mil", *sys.argv[1:]]),
                    engine=runner,
                )
            finally:
                view.stop()
        print_summary(console, summary)
        raise typer.Exit(exit_code(summary))
