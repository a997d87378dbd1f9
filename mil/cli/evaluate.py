"""`mil evaluate`: metrics with bootstrap CIs from a predictions CSV (+ labels), as JSON, PNGs and a table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from mil.cli.options import config_option, field_option, set_option, typed_flags
from mil.config.sections import EvaluateConfig

if TYPE_CHECKING:
    from mil.tasks import Task


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        ctx: typer.Context,
        predictions: Path = typer.Argument(
            ..., help="Predictions CSV from `mil train`/`mil predict` (+ .spec.json)."
        ),
        labels: Path | None = typer.Option(
            None,
            "--labels",
            help="Labels CSV (patient_id + target columns): truth for predictions that lack it.",
        ),
        output: Path | None = typer.Option(
            None,
            "-o",
            "--output",
            help="metrics JSON to write (default: metrics.json beside the predictions; required for predictions "
            "inside a run, whose own metrics.json it would replace).",
        ),
        plots: Path | None = typer.Option(
            None, "--plots", help="Folder for ROC / confusion / Kaplan-Meier PNGs."
        ),
        n_bootstrap: int = field_option(EvaluateConfig, "n_bootstrap", "--bootstrap"),
        seed: int = field_option(EvaluateConfig, "seed", "--seed"),
        config: str = config_option(),
        set_: list[str] = set_option(),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing metrics and plots."),
    ) -> None:
        """Per-fold and pooled metrics with bootstrap 95% CIs (AUC, balanced accuracy, c-index, ...)."""
        from mil.config import load_config
        from mil.evaluate.plots import write_plots
        from mil.evaluate.predictions import spec_path
        from mil.evaluate.run import check_outputs, default_output, evaluate_files, write_metrics
        from mil.tasks import create_task

        cfg = load_config(config, set_, typed_flags(ctx, "evaluate"))
        output = output or default_output(Path(predictions))
        inputs = (predictions, spec_path(predictions), labels)
        check_outputs([output], overwrite, inputs)
        result = evaluate_files(predictions, labels, cfg.evaluate)
        task = create_task(result.spec)
        planned = [plots / name for name in task.plots] if plots is not None else []
        check_outputs(planned, overwrite, inputs)
        written = write_plots(result.predictions, result.spec, plots) if plots is not None else []
        write_metrics(result.metrics, output)
        console = Console()
        console.print(summary_table(result.metrics, task))
        metrics = result.metrics
        print_comparison(console, task.metric_name, metrics["pooled"], metrics.get("baselines", {}),
                         metrics.get("comparison", {}), "these predictions")  # fmt: skip
        print_covariates(console, metrics.get("covariates", {}))
        for note in result.notes:
            console.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)
        if result.unlabelled:
            console.print(
                f"[yellow]{len(result.unlabelled)} patient(s) without a label were left out[/yellow]"
            )
        for path in [output, *written]:
            console.print(f"wrote {path}")


def summary_table(metrics: dict, task: Task) -> Table:
    """Headline metrics with 95% CIs: pooled, each fold, mean and SD over folds, and the kind's details (pooled)."""
    from mil.tasks.formatting import ci_cells

    table = Table(
        title=f"{task.kind}: {metrics['n_patients']} patients, {metrics['n_bootstrap']} bootstrap draws",
        caption=f"pooled {task.summary(metrics['pooled'])}",
    )
    for col in ("block", "metric", "estimate", "95% CI"):
        table.add_column(col, justify="left" if col in ("block", "metric") else "right")
    for name, block in [
        ("pooled", metrics["pooled"]),
        *[(f"fold {k}", b) for k, b in metrics["folds"].items()],
    ]:
        for row in task.headline_rows(block):
            table.add_row(name, *row)
    for key, entry in metrics.get("fold_summary", {}).items():
        if entry.get("mean") is not None:
            sd = "" if entry.get("std") is None else f"SD {ci_cells(entry['std'])[0]}"
            table.add_row(f"mean of {entry['n_folds']} folds", key, ci_cells(entry["mean"])[0], sd)
    for row in task.detail_rows(metrics["pooled"]):
        table.add_row("pooled", *row)
    return table


def print_comparison(
    console: Console, metric: str, head: dict, baselines: dict, comparison: dict, head_label: str
) -> None:
    """Head vs each baseline on the pooled headline metric with the paired difference, then the verdicts and
    the baselines' fit notes (metrics.json's `baselines` and `comparison` blocks); nothing without baselines."""
    from mil.tasks.formatting import COMPARISON_HEADER, comparison_rows

    if not baselines:
        return
    table = Table(
        title=f"head vs baselines - {metric}, same patients, paired bootstrap", title_justify="left"
    )
    for col in COMPARISON_HEADER:
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in comparison_rows(metric, head, baselines, comparison, head_label):
        table.add_row(*row)
    console.print(table)
    for compared in comparison.values():
        console.print(compared["verdict"], highlight=False, soft_wrap=True)
    for name, record in baselines.items():
        notes = [
            f"fold {k}: {n}" for k, fold in record.get("folds", {}).items() for n in fold.get("notes", [])
        ]
        for note in notes[:3]:
            console.print(f"[yellow]{name}[/yellow] {note}", highlight=False, soft_wrap=True)
        if len(notes) > 3:
            console.print(
                f"[yellow]{name}[/yellow] {len(notes) - 3} more notes in metrics.json", highlight=False
            )


def print_covariates(console: Console, block: dict) -> None:
    """The three models of a run with covariates side by side, then each paired difference (metrics.json's
    `covariates` block); nothing without covariates."""
    from mil.tasks.formatting import ci_cells

    if not block:
        return
    table = Table(
        title=f"covariates ({', '.join(block.get('columns') or ['?'])}) - {block['metric']}, same folds, "
        "paired bootstrap",
        title_justify="left",
    )
    for col in ("model / difference", "estimate", "95% CI", "what it says"):
        table.add_column(col, justify="left" if col in ("model / difference", "what it says") else "right")
    for name, ci in block["models"].items():
        table.add_row(name.replace("_", " "), *ci_cells(ci), "")
    for name, compared in block["differences"].items():
        table.add_row(name.replace("_", " "), *ci_cells(compared["difference"]), compared["says"])
    console.print(table)
