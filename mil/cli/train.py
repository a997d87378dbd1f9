"""`mil train` and `mil predict`: thin wrappers over `mil.training.train.train_cv` and `mil.training.predict.predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mil.cli.options import (
    address_option,
    config_option,
    engine_option,
    field_option,
    set_option,
    typed_flags,
)
from mil.config import TrainConfig


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
            text = (
                f"held-out loss {info['val_loss']:.4f}  metric {info['val_metric']:.3f}  "
                f"best epoch {info['best_epoch']}"
            )
            p.update(self.tasks[info["fold"]], completed=info["epoch"], info=text)
        elif event == "member":
            text = f"epoch {info['epoch']}: {info['member']} of {info['members']} member models trained"
            p.update(self.tasks[info["fold"]], info=text)
        elif event == "fold_end":
            task = self.tasks[info["fold"]]
            how = "stopped early" if info["epochs_run"] < self.epochs.get(info["fold"], 0) else "done"
            chosen = f"chose {info['chosen']}; " if info.get("chosen") else ""
            p.update(
                task,
                total=info["epochs_run"],
                completed=info["epochs_run"],
                info=f"{how}; {chosen}best epoch {info['best_epoch']}, test {info['test_metric']:.3f}",
            )
        elif event == "baseline_start":
            label = f"baseline {info['name']} (same folds, C by inner CV)"
            self.tasks[("baseline", info["name"])] = p.add(label, total=1, info="")
        elif event == "baseline_end":
            done = (
                f"done, {info['seconds']:.1f} s"
                if info["status"] == "ok"
                else f"{info['status']}: {info.get('reason')}"
            )
            p.update(self.tasks[("baseline", info["name"])], completed=1, info=done)
        elif event == "predict":
            if "predict" not in self.tasks:
                self.tasks["predict"] = p.add("fold models", total=info["total"], info="")
            p.update(self.tasks["predict"], completed=info["done"], info=f"{info['patients']} patients")
        elif event == "warning":
            from rich.markup import escape

            p.print(f"[yellow]warning:[/yellow] {escape(info['text'])}")
        elif event == "metrics":
            self.tasks["metrics"] = p.add(
                f"metrics ({info['n_bootstrap']} bootstrap draws)", total=None, info=""
            )
        elif event == "done" and "metrics" in self.tasks:
            p.update(self.tasks["metrics"], total=1, completed=1)


def print_summary(console: Console, summary: Any) -> None:
    from mil.cli.evaluate import print_comparison, print_covariates
    from mil.tasks.formatting import format_ci

    spec = summary.spec
    auto = bool(summary.candidates)
    table = Table(title=f"{spec.kind} of {spec.target} - {summary.metric}", title_justify="left")
    columns = (
        "fold",
        "train/val/test",
        "models",
        "best epoch",
        *(("chosen",) if auto else ()),
        summary.metric,
    )
    for col in columns:
        table.add_column(col)
    for f in summary.folds:
        name = f"{f.fold} ({f.name})" if f.name else str(f.fold)
        chosen = (f.chosen,) if auto else ()
        table.add_row(name, f"{f.n_train}/{f.n_val}/{f.n_test}", str(f.n_models), f"{f.best_epoch}/{f.epochs_run}",
                      *chosen, format_ci(f.test))  # fmt: skip
    filler = ("",) * (len(columns) - 3)
    table.add_row(
        "[bold]pooled[/bold]", str(summary.n_patients), *filler, f"[bold]{format_ci(summary.pooled)}[/bold]"
    )
    console.print(table)
    if auto:
        shown = ", ".join(f"{name} {format_ci(block or {})}" for name, block in summary.candidates.items())
        console.print(
            f"auto: the pooled row is the nested estimate (each fold chose on its inner patients only); "
            f"each candidate alone: {shown} (picking the best of these after the fact is optimistic)"
        )
    if summary.calibration:
        after, before = summary.calibration["calibrated"], summary.calibration["uncalibrated"]
        console.print(
            f"calibration ({summary.calibration['method']}, fitted per fold on inner held-out patients): "
            f"ECE {before['ece']:.3f} -> {after['ece']:.3f}, Brier {before['brier']:.3f} -> {after['brier']:.3f}"
        )
    print_comparison(
        console, summary.metric, {summary.metric: summary.pooled}, summary.baselines, summary.comparison,
        f"{summary.head} (head)",
    )  # fmt: skip
    print_covariates(console, summary.covariates)
    left = ", ".join(
        f"{n} {what.replace('_', ' ')}"
        for what, n in summary.left_out.items()
        if n and what != "not_in_splits"  # not patients of this cohort: their own line below
    )
    console.print(f"patients: {summary.n_patients} used; left out: {left or 'none'} (see left_out.csv)")
    if summary.splits_only:
        from rich.markup import escape

        from mil.cohort.labels import first_ids

        console.print(
            f"[yellow]--splits names {len(summary.splits_only)} patient(s) not in this cohort[/] "
            f"({escape(first_ids(summary.splits_only))}): its folds were used without them (listed in left_out.csv)",
            highlight=False,
        )
    console.print(f"run written to {summary.run} ({summary.seconds:.0f} s on {summary.device})")


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        ctx: typer.Context,
        bags: Path = typer.Option(..., "--bags", help="Bag store written by `mil extract`."),
        labels: Path = typer.Option(
            ..., "--labels", help="CSV: patient_id, optional slide_id, target column(s)."
        ),
        out: Path = typer.Option(..., "-o", "--out", help="Run folder to create."),
        target: list[str] = field_option(TrainConfig, "target", "--target"),
        task: str = field_option(TrainConfig, "task", "--task"),
        time_col: str = field_option(TrainConfig, "time_col", "--time-col"),
        event_col: str = field_option(TrainConfig, "event_col", "--event-col"),
        head: str = field_option(TrainConfig, "head", "--model"),
        folds: int = field_option(TrainConfig, "folds", "--folds"),
        config: str = config_option(),
        set_: list[str] = set_option(),
        splits: Path = typer.Option(None, "--splits", help="Reuse the folds of a run's splits.json."),
        group_by: str = field_option(TrainConfig, "group_by", "--group-by"),
        seed: int = field_option(TrainConfig, "seed", "--seed"),
        epochs: int = field_option(TrainConfig, "epochs", "--epochs"),
        device: str = field_option(TrainConfig, "device", "--device"),
        baselines: list[str] = field_option(TrainConfig, "baselines", "--baselines"),
        cell_model: str = field_option(TrainConfig, "cell_model", "--cell-model"),
        covariates: list[str] = field_option(TrainConfig, "covariates", "--covariates"),
        clinical: Path = typer.Option(
            None,
            "--clinical",
            help="CSV: patient_id + the --covariates columns (instead of the labels CSV's).",
        ),
        allow_missing: bool = field_option(TrainConfig, "allow_missing", "--allow-missing"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
        engine: str = engine_option(),
        address: str = address_option(),
    ) -> None:
        """Cross-validate a MIL head on patient-level labels; write models, predictions, metrics and plots."""
        from mil.config import load_config
        from mil.training.engines import create_fold_engine
        from mil.training.train import train_cv

        runner = create_fold_engine(engine, address=address)
        flags = typed_flags(ctx, "train")
        if len(flags["train"].get("target") or []) == 1:  # one --target is one column, not a multi-label list
            flags["train"]["target"] = flags["train"]["target"][0]
        cfg = load_config(config, set_, flags)
        console = Console()
        reused = (cfg.provenance or {}).get("splits_from")
        if reused and splits is None:
            from rich.markup import escape

            console.print(
                f"[yellow]warning:[/] the run of {escape(str(config))} reused the folds of {escape(str(reused))}; "
                "pass --splits with that file to repeat it exactly (these folds are made afresh)",
                highlight=False,
                soft_wrap=True,
            )
        with RichProgress(console) as progress:
            summary = train_cv(
                bags, labels, cfg.train, out, splits=splits, overwrite=overwrite, progress=progress,
                evaluate=cfg.evaluate, clinical=clinical, engine=runner,
            )  # fmt: skip
        print_summary(console, summary)

    @app.command("predict")
    def predict(
        run: Path = typer.Argument(..., help="Run folder written by `mil train`."),
        bags: Path = typer.Option(..., "--bags", help="Bag store of the slides to predict (same encoder)."),
        out: Path = typer.Option(..., "-o", "--out", help="Predictions CSV to write (+ .spec.json)."),
        labels: Path = typer.Option(None, "--labels", help="CSV mapping slide_id -> patient_id (and truth)."),
        clinical: Path = typer.Option(
            None,
            "--clinical",
            help="CSV: patient_id + the run's covariate columns (else read from --labels).",
        ),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing predictions file (never one of the run's own)."
        ),
    ) -> None:
        """Predict new slides with the ensemble of a run's fold models (mean of their outputs)."""
        from mil.training.predict import predict as predict_fn

        console = Console()

        def warn(line: str) -> None:
            from rich.markup import escape

            console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)

        with RichProgress(console) as progress:
            path = predict_fn(
                run, bags, out, labels=labels, device=device, overwrite=overwrite, clinical=clinical,
                warn=warn, progress=progress,
            )  # fmt: skip
        import pandas as pd

        n = len(pd.read_csv(path, usecols=["patient_id"]))
        console.print(f"predicted {n} patients with the fold ensemble of {run} -> {path}")
