"""The run's own results as HTML sections: metrics with CIs (RUN/metrics.json), figures and the predictions.

Numbers are read from metrics.json exactly as `mil train`/`mil evaluate` wrote them (keys documented in
`mil.evaluate`); figures are redrawn from predictions.csv by `mil.evaluate.plots.write_plots`, the same
function the run used, so the report can never disagree with the run folder. What differs by task kind
(headline rows, the per-class table or risk groups, figure captions) comes from the kind (`mil.tasks`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from mil.report.html import esc, img, note, section, table
from mil.tasks import TaskSpec, create_task
from mil.tasks.formatting import ci_cells


def metrics_section(metrics: dict | None) -> str:
    if metrics is None:
        return section("metrics", "Performance", note("The run folder has no metrics.json."))
    task = create_task(TaskSpec.from_dict(metrics["spec"], source="metrics.json"))
    pooled = metrics["pooled"]
    level = int(round(100 * metrics.get("ci_level", 0.95)))
    rows = [list(row) for row in task.headline_rows(pooled)]
    for key, entry in metrics.get("fold_summary", {}).items():
        if entry.get("mean") is not None:
            sd = ci_cells(entry.get("std"))[0]
            rows.append([f"{key}, mean of {entry['n_folds']} folds", ci_cells(entry["mean"])[0], f"SD {sd}"])
    body = note(
        f"{metrics['n_patients']} patients, out-of-fold predictions pooled over folds; {level}% bootstrap CIs "
        f"from {metrics['n_bootstrap']} draws (seed {metrics['seed']}). Pooled {task.summary(pooled)}."
    )
    body += table(["metric", "estimate", f"{level}% CI"], rows)
    body += task.report_html(pooled, level)
    return section("metrics", "Performance", body)


def comparison_section(run: Path, metrics: dict | None, head_name: str) -> str:
    """Head vs baseline: the pooled headline metric of each, head minus baseline with its paired CI, the
    verdicts, and one figure with every model's curves redrawn from the run's prediction tables."""
    from mil.evaluate.predictions import read_predictions
    from mil.tasks.formatting import COMPARISON_HEADER, comparison_rows

    title = "Head vs baseline"
    if metrics is None:  # the baselines may well exist: their figures live in metrics.json
        why = "The run folder has no metrics.json, so the comparison with its baselines cannot be shown."
        return section("baselines", title, note(why))
    if not metrics.get("baselines"):
        why = "This run has no baselines (train.baselines was empty, or the run predates them)."
        return section("baselines", title, note(why))
    task = create_task(TaskSpec.from_dict(metrics["spec"], source="metrics.json"))
    baselines, comparison = metrics["baselines"], metrics.get("comparison", {})
    body = note(
        "The same out-of-fold patients scored by simple baselines fitted on the run's own folds: each "
        "patient's cells summarised as patient-level features (e.g. the mean, SD and 10/50/90 % quantiles of "
        "every feature), then a regularised linear model whose strength is chosen inside each fold's training "
        "patients. The difference is the head's minus the baseline's, with a paired bootstrap CI (the same "
        f"patient resamples for both, {metrics['n_bootstrap']} draws). If it includes 0, the run shows no "
        "evidence that attention over cells adds to the baseline."
    )
    rows = comparison_rows(task.metric_name, metrics["pooled"], baselines, comparison, f"{head_name} (head)")
    body += table(list(COMPARISON_HEADER), rows)
    body += "".join(f"<p>{esc(c['verdict'])}</p>" for c in comparison.values())
    paths = {"head": Path(run) / "predictions.csv"}
    paths.update({name: Path(run) / "baselines" / name / "predictions.csv" for name in comparison})
    if all(p.is_file() for p in paths.values()):
        figure = task.comparison_figure({name: read_predictions(p)[0] for name, p in paths.items()})
        if figure is not None:
            body += f'<div class="figs">{img(_png(figure), "head vs baselines")}</div>'
    else:
        body += note("The baselines' predictions.csv are not in the run folder; no figure.")
    return section("baselines", title, body)


def covariates_section(metrics: dict | None) -> str:
    """Covariates only vs image only vs fused (metrics.json `covariates`): each model's pooled headline
    metric and the paired differences, so a reader sees what the smear adds beyond the numbers. Empty for a
    run without covariates."""
    block = (metrics or {}).get("covariates")
    if not block:
        return ""
    columns = ", ".join(block["columns"])
    body = note(
        f"Clinical covariates ({columns}, from {block['source']}) beside the bag. Three models on the same "
        "folds and patients: the covariates alone (regularised linear model, C by inner CV), the image alone "
        "(the head without covariates, same seeds) and fused (the head with a covariate embedding joined to "
        "its pooled bag embedding: the run's model). Covariates were imputed and standardised with each "
        "fold's training patients only. Differences are paired bootstrap CIs on the same patient resamples "
        f"({metrics['n_bootstrap']} draws); one that includes 0 shows no evidence either way."
    )
    rows = [[name.replace("_", " "), *ci_cells(ci), ""] for name, ci in block["models"].items()]
    rows += [
        [name.replace("_", " "), *ci_cells(c["difference"]), c["says"]]
        for name, c in block["differences"].items()
    ]
    body += table(["model / difference", block["metric"], "95% CI", "what it says"], rows)
    if block.get("covariates_only_skipped"):
        body += note(f"covariates only did not run: {block['covariates_only_skipped']}")
    return section("covariates", "Covariates only vs image only vs fused", body)


def _png(figure) -> bytes:
    import io

    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=150)
    return buf.getvalue()


def figures_section(df: pd.DataFrame | None, spec: TaskSpec) -> str:
    from mil.evaluate.plots import write_plots

    if df is None:
        return section("figures", "Figures", note("The run folder has no predictions.csv."))
    task = create_task(spec)
    df = df.dropna(subset=task.truth_columns())
    if df.empty:
        return section("figures", "Figures", note("No predictions with a known truth to plot."))
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_plots(df, spec, Path(tmp))
        images = [img(p.read_bytes(), p.stem) for p in paths]
    caption = ", ".join(task.plots.get(p.name, p.stem) for p in paths)
    return section("figures", f"Figures: {caption}", f'<div class="figs">{"".join(images)}</div>')


def predictions_section(df: pd.DataFrame | None, spec: TaskSpec, groups: dict[str, str]) -> str:
    if df is None:
        return section(
            "predictions", "Per-patient predictions", note("The run folder has no predictions.csv.")
        )
    cols = [c for c in create_task(spec).columns() if c in df.columns]
    rows = [[*r, groups.get(str(r[0]), "")] for r in df[cols].itertuples(index=False, name=None)]
    body = note(
        "Out-of-fold predictions of the run (each patient scored by the fold model that did not train on it). "
        "Click a column header to sort. 'shown as' is the class whose galleries and discovery include the "
        "patient (truth where known, else the ensemble's prediction)."
    )
    body += table([*cols, "shown as"], rows, sortable=True, scroll=True)
    return section("predictions", f"Per-patient predictions ({len(df)})", body)


def provenance_section(lines: dict[str, object]) -> str:
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td style='text-align:left'>{esc(v)}</td></tr>" for k, v in lines.items()
    )
    return section("provenance", "Method and provenance", f"<table><tbody>{rows}</tbody></table>")


def recipe_section(metrics: dict | None) -> str:
    """How the run chose and calibrated its models (metrics.json `selection`, `calibration`): the choice per
    fold and every candidate beside the nested estimate (--model auto); ECE and Brier before and after
    calibration with the reliability diagram. Empty for runs written before these records existed."""
    if not metrics or "selection" not in metrics:
        return ""
    sel = metrics["selection"]
    task = create_task(TaskSpec.from_dict(metrics["spec"], source="metrics.json"))
    how = (
        f"cross-fitting: {sel['inner_folds']} inner parts x {sel['seeds']} seed(s) = member models per fold, "
        "early-stopped together on all their held-out training patients"
        if sel["selection"] == "crossfit"
        else "one model per fold, early-stopped on a validation part of its training patients"
    )
    body = note(f"Model selection: {how}.")
    rows = [
        [fold, rec["chosen"], str(rec["best_epoch"]),
         ", ".join(f"{n} {ci_cells(c['inner_metric'])[0]}" for n, c in rec["candidates"].items())]
        for fold, rec in sel["folds"].items()
    ]  # fmt: skip
    body += table(["fold", "chosen", "best epoch", f"inner held-out {task.metric_label} per candidate"], rows)
    if sel.get("candidates"):
        nested = metrics["pooled"].get(task.metric_name) or {}
        rows = [["auto (nested: chosen per fold on inner patients)", *ci_cells(nested)]]
        rows += [
            [f"{name} alone", *ci_cells(block.get(task.metric_name) or {})]
            for name, block in sel["candidates"].items()
        ]
        body += note(
            f"--model auto. Best single candidate after the fact: {sel.get('best_single')} (optimistic: picked "
            "after seeing the test folds); the auto row is the honest estimate."
        )
        body += table(["model", f"pooled {task.metric_label}", "95% CI"], rows)
    cal = metrics.get("calibration")
    if cal:
        from mil.evaluate.calibration import reliability_figure

        before, after = cal["uncalibrated"], cal["calibrated"]
        body += note(
            f"Calibration ({cal['method']}): one temperature and a bias per output fitted per fold on inner "
            "held-out patients only, stored in the fold checkpoints and applied by `mil predict`."
        )
        body += table(
            ["", "ECE", "Brier"],
            [["uncalibrated", f"{before['ece']:.3f}", f"{before['brier']:.3f}"],
             ["calibrated", f"{after['ece']:.3f}", f"{after['brier']:.3f}"]],
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            from mil.evaluate.plots import save_figure

            path = save_figure(reliability_figure(after, before), Path(tmp) / "reliability.png")
            body += f'<div class="figs">{img(path.read_bytes(), "reliability")}</div>'
    return section("recipe", "Model selection and calibration", body)
