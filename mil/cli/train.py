"""`mil train` and `mil predict`: thin wrappers over `mil.training.train.train_cv` and `mil.training.predict.predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table


class RichProgress:
    """Turns the library's progress events into steps (`mil.cli.progress`): bag loading, then one per fold."""

    def __init__(self, console: Console):
        from rich.progress import TextColumn

        from mil.cli.progress import Steps, default_columns

        columns = (*default_columns(), TextColumn("{task.fields[info]}"))
        self.progress = Steps(console, *columns, transient=False)
        self.tasks: dict[Any, Any] = {}
        self.epochs: dict[int, int] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: str, **info: Any) -> None:
        p = self.progress
        if event == "load":
            if "load" not in self.tasks:
                self.tasks["load"] = p.add("loading bags", total=info.get("total") or None, info="")
            p.update(self.tasks["load"], completed=info.get("done", 0), total=info.get("total"))
        elif event == "fold_start":
            name = f" ({info['name']})" if info.get("name") else ""
            label = f"fold {info['fold']}{name} [{info['n_train']}/{info['n_val']}/{info['n_test']}]"
            self.tasks[info["fold"]] = p.add(label, total=info["epochs"], info="")
            self.epochs[info["fold"]] = info["epochs"]
        elif event == "epoch":
            text = f"val loss {info['val_loss']:.4f}  metric {info['val_metric']:.3f}  best epoch {info['best_epoch']}"
            p.update(self.tasks[info["fold"]], completed=info["epoch"], info=text)
        elif event == "fold_end":
            task = self.tasks[info["fold"]]
            how = "stopped early" if info["epochs_run"] < self.epochs.get(info["fold"], 0) else "done"
            p.update(
                task,
                total=info["epochs_run"],
                completed=info["epochs_run"],
                info=f"{how}; best epoch {info['best_epoch']}, test {info['test_metric']:.3f}",
            )
        elif event == "metrics":
            self.tasks["metrics"] = p.add(
                f"metrics ({info['n_bootstrap']} bootstrap draws)", total=None, info=""
            )
        elif event == "done" and "metrics" in self.tasks:
            p.update(self.tasks["metrics"], total=1, completed=1)


def print_summary(console: Console, summary: Any) -> None:
    from mil.tasks.formatting import format_ci

    spec = summary.spec
    table = Table(title=f"{spec.kind} of {spec.target} - {summary.metric}", title_justify="left")
    for col in ("fold", "train/val/test", "best epoch", summary.metric):
        table.add_column(col)
    for f in summary.folds:
        name = f"{f.fold} ({f.name})" if f.name else str(f.fold)
        table.add_row(
            name, f"{f.n_train}/{f.n_val}/{f.n_test}", f"{f.best_epoch}/{f.epochs_run}", format_ci(f.test)
        )
    table.add_row(
        "[bold]pooled[/bold]", str(summary.n_patients), "", f"[bold]{format_ci(summary.pooled)}[/bold]"
    )
    console.print(table)
    left = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in summary.left_out.items() if n)
    console.print(f"patients: {summary.n_patients} used; left out: {left or 'none'} (see left_out.csv)")
    console.print(f"run written to {summary.run} ({summary.seconds:.0f} s on {summary.device})")


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        bags: Path = typer.Option(..., "--bags", help="Bag store written by `mil extract`."),
        labels: Path = typer.Option(
            ..., "--labels", help="CSV: patient_id, optional slide_id, target column(s)."
        ),
        out: Path = typer.Option(..., "-o", "--out", help="Run folder to create."),
        target: list[str] = typer.Option(
            None, "--target", help="Label column; repeat for a multi-label head."
        ),
        task: str = typer.Option(None, "--task", help="Task kind (`mil list tasks`; default: inferred)."),
        time_col: str = typer.Option(None, "--time-col", help="Survival: follow-up time column."),
        event_col: str = typer.Option(None, "--event-col", help="Survival: event column (1 = event)."),
        model: str = typer.Option(None, "--model", help="MIL head (`mil list heads`), e.g. abmil."),
        folds: int = typer.Option(None, "--folds", help="Cross-validation folds."),
        config: str = typer.Option(None, "--config", help="YAML config, or a name in configs/ (e.g. npm1)."),
        set_: list[str] = typer.Option(None, "--set", help="Override: train.key=value (repeatable)."),
        splits: Path = typer.Option(None, "--splits", help="Reuse the folds of a run's splits.json."),
        group_by: str = typer.Option(
            None, "--group-by", help="Labels column: one fold per value (e.g. site)."
        ),
        seed: int = typer.Option(None, "--seed", help="Random seed."),
        epochs: int = typer.Option(None, "--epochs", help="Maximum epochs per fold."),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps."),
        allow_missing: bool = typer.Option(
            False, "--allow-missing", help="Leave out unmatched patients/slides."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    ) -> None:
        """Cross-validate a MIL head on patient-level labels; write models, predictions, metrics and plots."""
        from mil.config import load_config
        from mil.training.train import train_cv

        given = {
            "target": (target[0] if len(target) == 1 else list(target)) if target else None,
            "task": task,
            "time_col": time_col,
            "event_col": event_col,
            "head": model,
            "folds": folds,
            "group_by": group_by,
            "seed": seed,
            "epochs": epochs,
            "device": device,
            "allow_missing": True if allow_missing else None,
        }
        cfg = load_config(config, set_, {"train": {k: v for k, v in given.items() if v is not None}})
        console = Console()
        with RichProgress(console) as progress:
            summary = train_cv(
                bags, labels, cfg.train, out, splits=splits, overwrite=overwrite, progress=progress
            )
        print_summary(console, summary)

    @app.command("predict")
    def predict(
        run: Path = typer.Argument(..., help="Run folder written by `mil train`."),
        bags: Path = typer.Option(..., "--bags", help="Bag store of the slides to predict (same encoder)."),
        out: Path = typer.Option(..., "-o", "--out", help="Predictions CSV to write (+ .spec.json)."),
        labels: Path = typer.Option(None, "--labels", help="CSV mapping slide_id -> patient_id (and truth)."),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps."),
    ) -> None:
        """Predict new slides with the ensemble of a run's fold models (mean of their outputs)."""
        from mil.training.predict import predict as predict_fn

        path = predict_fn(run, bags, out, labels=labels, device=device)
        import pandas as pd

        n = len(pd.read_csv(path, usecols=["patient_id"]))
        Console().print(f"predicted {n} patients with the fold ensemble of {run} -> {path}")
