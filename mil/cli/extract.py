"""`mil extract`: slides, cell-image folders or h5 feature files -> a bag store. Thin: resolve the config,
call `features.pipeline.extract.extract` once, show its progress and a summary table."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

RANDOM_LINE = (
    "[bold red]RANDOM ENCODER WEIGHTS: these embeddings carry no learned features (tests and timing only)[/]"
)


class ProgressView:
    """Overall slides bar plus one line per slide in flight (several with loader workers)."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.overall: TaskID | None = None
        self.slides: dict[str, TaskID] = {}

    def __call__(self, event: str, **info: Any) -> None:
        bar = self.bar
        if event == "start":
            if info["random_weights"]:
                self.console.print(RANDOM_LINE)
            self.console.print(
                f"{info['total']} slide(s): {info['todo']} to extract, {info['skipped']} already done; "
                f"encoder {info['encoder'].describe()}",
                highlight=False,
            )
            self.overall = bar.add_task("slides", total=info["todo"])
            bar.start()
        elif event == "slide_start":
            self.slides[info["slide_id"]] = bar.add_task(f"  {info['slide_id']}: open", total=None)
        elif event == "slide_stage" and info["slide_id"] in self.slides:
            total = info["info"].get("total")
            bar.update(
                self.slides[info["slide_id"]],
                description=f"  {info['slide_id']}: {info['stage']}",
                total=total,
            )
        elif event == "slide_instances" and info["slide_id"] in self.slides:
            bar.update(
                self.slides[info["slide_id"]],
                completed=info["done"],
                description=f"  {info['slide_id']}: encode",
            )
        elif event == "slide_notice":  # one input of a slide left out (a patient's bad field); the rest go on
            bar.console.print(f"[yellow]left out[/] {info['message']}", highlight=False, soft_wrap=True)
        elif event == "slide_done":
            outcome = info["outcome"]
            task = self.slides.pop(outcome.slide_id, None)
            if task is not None:
                bar.remove_task(task)
            if outcome.status == "failed":
                bar.console.print(f"[red]failed[/] {outcome.message}", highlight=False, soft_wrap=True)
            if outcome.status != "skipped" and self.overall is not None:
                bar.advance(self.overall)

    def stop(self) -> None:
        self.bar.stop()


def summary_table(summary: Any) -> Table:
    table = Table(title=f"mil extract -> {summary.store}", title_justify="left")
    for col in ("slide", "patient", "status", "instances", "seconds", "message"):
        table.add_column(col, justify="right" if col in ("instances", "seconds") else "left")
    style = {"written": "green", "skipped": "cyan", "failed": "red"}
    for o in summary.outcomes:
        table.add_row(
            o.slide_id,
            o.patient_id,
            f"[{style[o.status]}]{o.status}[/]",
            str(o.instances),
            f"{o.seconds:.1f}" if o.status != "skipped" else "",
            o.message,
        )
    counts = ", ".join(f"{summary.count(s)} {s}" for s in ("written", "skipped", "failed"))
    table.caption = f"{counts}; {summary.instances} instances written in {summary.seconds:.1f} s"
    return table


def exit_code(summary: Any) -> int:
    from mil.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL

    done = summary.count("written") + summary.count("skipped")
    if summary.stopped_early or done == 0:
        return EXIT_FAILED
    return EXIT_PARTIAL if summary.count("failed") else EXIT_OK


def register(app: typer.Typer) -> None:
    @app.command("extract")
    def extract_cmd(
        input: Path = typer.Argument(
            ...,
            help="Folder of slides, of per-patient folders of cell images or of microscope fields, or of .h5 "
            "feature files; one slide or .h5 file; or a .csv manifest.",
        ),
        output: Path = typer.Option(..., "-o", "--output", help="Bag store (a folder, e.g. bags.zarr)."),
        encoder: str = typer.Option(
            None, "--encoder", help="Encoder (`mil list encoders`); default cytomorph."
        ),
        weights: str = typer.Option(None, "--weights", help="Weights file, or `random` (tests/timing only)."),
        unit: str = typer.Option(
            None, "--unit", help="cells (detected nucleated cells) | tiles (grid tiles)."
        ),
        mpp: float = typer.Option(
            None,
            "--mpp",
            help="µm per level-0 pixel, for slides without it; for fields (else estimated from red cells).",
        ),
        source: str = typer.Option(None, "--source", help="auto | slides | cells | fields | manifest | h5."),
        shard: str = typer.Option(
            "0/1", "--shard", help="i/N: this process takes slides i, i+N, ... (sorted by id)."
        ),
        config: Path = typer.Option(None, "--config", help="YAML config (its `extract:` section is used)."),
        set_: list[str] = typer.Option(None, "--set", help="Override: extract.key=value (repeatable)."),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda."),
        batch_size: int = typer.Option(None, "--batch-size", help="Crops per encoder batch."),
        workers: int = typer.Option(None, "--workers", help="Loader processes (0: inline)."),
        max_instances: int = typer.Option(None, "--max-instances", help="Seeded random cap per slide."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing bags."),
        skip_errors: bool = typer.Option(
            None,
            "--skip-errors/--no-skip-errors",
            help="Go on after a failed slide (default) or stop at the first.",
        ),
    ) -> None:
        """Extract one bag of embeddings per slide (or import .h5 features) into a bag store."""
        from features.encoders import RandomWeightsWarning
        from features.pipeline.extract import extract, parse_shard
        from mil.config import load_config

        given = {
            "encoder": encoder,
            "weights": weights,
            "unit": unit,
            "mpp": mpp,
            "source": source,
            "device": device,
            "batch_size": batch_size,
            "workers": workers,
            "max_instances": max_instances,
            "skip_errors": skip_errors,
        }
        flags = {"extract": {k: v for k, v in given.items() if v is not None}}
        cfg = load_config(config, set_, flags).extract
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
                )
            finally:
                view.stop()
        if summary.outcomes:
            console.print(summary_table(summary))
        if summary.message:
            console.print(f"[red]nothing extracted:[/] {summary.message}", highlight=False)
        if summary.encoder is not None and summary.encoder.weights_sha256 == "random":
            console.print(RANDOM_LINE)
        if summary.swept:
            console.print(
                f"removed {len(summary.swept)} unfinished bag(s) left by an earlier run", highlight=False
            )
        if summary.stopped_early:
            console.print("[red]stopped at the first failure (--no-skip-errors)[/]")
        raise typer.Exit(exit_code(summary))
