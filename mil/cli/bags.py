"""`mil bags info|validate STORE`: what a bag store holds, and whether every bag in it is sound."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

bags_app = typer.Typer(help="Inspect and check bag stores.", no_args_is_help=True)


@bags_app.command("info")
def info(store: Path = typer.Argument(..., help="Bag store folder.")) -> None:
    """One row per bag (slide, patient, instances, dim, encoder, unit, mpp), totals, and unfinished writes."""
    from features.bagstore import BagStore

    bag_store = BagStore(store)
    metas = bag_store.metas()
    enc = bag_store.encoder
    table = Table(title=f"{store}: {enc.describe()}", title_justify="left")
    for col in ("slide", "patient", "instances", "dim", "encoder", "unit", "mpp", "source"):
        table.add_column(col, justify="right" if col in ("instances", "dim", "mpp") else "left")
    for m in metas:
        mpp = "" if m.mpp is None else f"{m.mpp:.4g}"
        table.add_row(
            m.slide_id,
            m.patient_id,
            str(m.n_instances),
            str(m.encoder.dim),
            m.encoder.name,
            m.encoder.unit,
            mpp,
            m.source_kind,
        )
    patients = len({m.patient_id for m in metas})
    table.caption = f"{len(metas)} bags, {patients} patients, {sum(m.n_instances for m in metas)} instances"
    console = Console()
    console.print(table)
    if enc.weights_sha256 == "random":
        console.print("[bold red]this store holds embeddings from RANDOM weights (tests and timing only)[/]")
    pending = bag_store.pending()
    if pending:
        console.print(
            f"{len(pending)} pending .tmp entr{'y' if len(pending) == 1 else 'ies'} (being written, or left by a "
            f"crash and removed by the next `mil extract`): {', '.join(pending)}",
            highlight=False,
        )


@bags_app.command("validate")
def validate(store: Path = typer.Argument(..., help="Bag store folder.")) -> None:
    """Check every bag (schema, shapes, NaN/inf, provenance): exit 0 if clean, 1 with one line per problem."""
    from features.bagstore import BagStore

    bag_store = BagStore(store)
    problems = bag_store.validate()
    console = Console()
    lines = [f"{slide}: {p}" for slide, found in problems.items() for p in found]
    for line in lines:
        console.print(f"[red]{line}[/]", highlight=False, soft_wrap=True)
    pending = bag_store.pending()
    if pending:  # not a problem of any bag: a writer at work, or a crash the next `mil extract` sweeps
        console.print(
            f"[yellow]note:[/] {len(pending)} pending .tmp entries: {', '.join(pending)}", highlight=False
        )
    if lines:
        raise typer.Exit(1)
    console.print(f"[green]ok[/] {len(problems)} bags in {store}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(bags_app, name="bags")
