"""`mil bags info|validate|qc|upgrade STORE`: what a bag store holds, whether every bag in it is sound, its
per-slide QC as files, and the conversion of an old store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

bags_app = typer.Typer(help="Inspect and check bag stores.", no_args_is_help=True)


@bags_app.command("info")
def info(store: Path = typer.Argument(..., help="Bag store folder.")) -> None:
    """One row per bag (slide, patient, instances, dim, encoder, unit, mpp), totals, and unfinished writes;
    a damaged bag (unreadable metadata, a lost chunk) is one line below the table (exit 1, as `bags
    validate`), the others are listed. Chunks are looked for on disk, not read (`bags validate --deep`)."""
    from features.bagstore import BagStore
    from features.core.errors import StoreError

    bag_store = BagStore(store)
    metas, damaged = [], []
    for key in bag_store.keys():
        try:
            meta = bag_store.meta_by_key(key)
        except StoreError as exc:  # its metadata cannot be read: name it, list the others
            damaged.append(str(exc))
            continue
        lost = bag_store.lost_files(key, meta)  # a lost chunk would read back as zeros: name it too
        if lost is None:
            metas.append(meta)
        else:
            damaged.append(lost)
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
    table.caption = (
        f"{len(metas)} bags, {patients} patients, {sum(m.n_instances for m in metas)} instances"
        + (f"; {len(damaged)} damaged (below)" if damaged else "")
    )
    console = Console()
    console.print(table)
    if enc.weights_sha256 == "random":
        console.print("[bold red]this store holds embeddings from RANDOM weights (tests and timing only)[/]")
    pending = bag_store.pending()
    if pending:
        console.print(
            f"{len(pending)} pending tmp entr{'y' if len(pending) == 1 else 'ies'} (being written, or left by a "
            f"crash and removed by the next `mil extract`): {', '.join(pending)}",
            highlight=False,
        )
    for line in damaged:
        console.print(f"[red]damaged bag:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if damaged:
        raise typer.Exit(1)


@bags_app.command("validate")
def validate(
    store: Path = typer.Argument(..., help="Bag store folder."),
    deep: bool = typer.Option(
        False, "--deep", help="Also decode every feature chunk and look for NaN/inf (reads all the data)."
    ),
) -> None:
    """Check every bag (schema, provenance, shapes, every chunk on disk, the small arrays decoded; --deep: the
    features too): exit 0 if clean, 1 with one line per problem."""
    from features.bagstore import BagStore

    bag_store = BagStore(store)
    problems = bag_store.validate(deep=deep)
    console = Console()
    lines = [f"{slide}: {p}" for slide, found in problems.items() for p in found]
    for line in lines:
        console.print(f"[red]{line}[/]", highlight=False, soft_wrap=True)
    pending = bag_store.pending()
    if pending:  # not a problem of any bag: a writer at work, or a crash the next `mil extract` sweeps
        console.print(
            f"[yellow]note:[/] {len(pending)} pending tmp entries: {', '.join(pending)}", highlight=False
        )
    if lines:
        raise typer.Exit(1)
    depth = (
        "features decoded, no NaN/inf" if deep else "every chunk on disk; --deep also decodes the features"
    )
    console.print(f"[green]ok[/] {len(problems)} bags in {store} ({depth})", highlight=False)


@bags_app.command("qc")
def qc(
    store: Path = typer.Argument(..., help="Bag store folder."),
    out: Path = typer.Option(..., "-o", "--output", help="Folder for the QC files (created if missing)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace QC files already in the folder."),
) -> None:
    """Per-slide QC as files: `<slide>.json` (status, areas, counts, focus, error) and `<slide>.png` overview."""
    from features.bagstore import BagStore
    from features.bagstore.qc_export import export_qc

    bag_store = BagStore(store)
    if not bag_store.qc_keys():  # nothing to write: say so, and leave no empty folder behind
        Console().print(
            f"nothing written: {store} holds no QC (`mil extract` keeps it per slide; imported .h5 features "
            "have none)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    written = export_qc(bag_store, out, overwrite)
    pngs = sum(p.suffix == ".png" for p in written)
    Console().print(
        f"{len(written) - pngs} QC summaries and {pngs} overviews written to {out}", highlight=False
    )


@bags_app.command("upgrade")
def upgrade(store: Path = typer.Argument(..., help="Bag store folder of an older mil.")) -> None:
    """Convert a store of the old layout in place (bags are moved, not re-extracted); run it while no
    extraction writes to the store."""
    from features.bagstore.upgrade import upgrade_store

    done = upgrade_store(store)
    if done.already:
        Console().print(
            f"{store} is already of the current layout; nothing to do", highlight=False, soft_wrap=True
        )
        return
    Console().print(
        f"[green]upgraded[/] {store}: {done.bags} bags, {done.qc} QC records, {done.runs} run records",
        highlight=False,
        soft_wrap=True,  # a store path broken over lines cannot be copied
    )


def register(app: typer.Typer) -> None:
    app.add_typer(bags_app, name="bags")
