"""The run's own results as HTML sections: metrics with CIs (RUN/metrics.json), figures and the predictions.

Numbers are read from metrics.json exactly as `mil train`/`mil evaluate` wrote them (keys documented in
`mil.evaluate`); figures are redrawn from predictions.csv by `mil.evaluate.plots.write_plots`, the same
function the run used, so the report can never disagree with the run folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from mil.evaluate.predictions import PredictionSpec
from mil.report.html import esc, fmt, img, note, section, table


def _ci(value: object) -> tuple[object, str]:
    if not isinstance(value, dict):
        return value, ""
    low, high = value.get("low"), value.get("high")
    interval = (
        f"{fmt(low)} – {fmt(high)}" if low is not None and high is not None else value.get("reason", "")
    )
    return value.get("estimate"), interval


def metrics_section(metrics: dict | None) -> str:
    if metrics is None:
        return section("metrics", "Performance", note("The run folder has no metrics.json."))
    kind, pooled = metrics["kind"], metrics["pooled"]
    level = int(round(100 * metrics.get("ci_level", 0.95)))
    keys = ("c_index", "logrank_p") if kind == "survival" else ("macro_auc", "balanced_accuracy", "accuracy")
    rows = []
    for key in keys:
        if key in pooled:
            est, ci = _ci(pooled[key])
            rows.append([key, est, ci])
    for key, entry in metrics.get("fold_summary", {}).items():
        if entry.get("mean") is not None:
            rows.append(
                [f"{key}, mean of {entry['n_folds']} folds", entry["mean"], f"SD {fmt(entry.get('std'))}"]
            )
    body = note(
        f"{metrics['n_patients']} patients, out-of-fold predictions pooled over folds; {level}% bootstrap CIs "
        f"from {metrics['n_bootstrap']} draws (seed {metrics['seed']})."
    )
    body += table(["metric", "estimate", f"{level}% CI"], rows)
    per_class = pooled.get("per_class") or {}
    if per_class:
        cols = ["auc", "sensitivity", "specificity", "precision", "f1", "support"]
        class_rows = []
        for name, block in per_class.items():
            auc, ci = _ci(block.get("auc"))
            class_rows.append([name, auc, ci, *[block.get(c) for c in cols[1:]]])
        body += "<h3>Per class (pooled, one vs rest)</h3>"
        body += table(["class", "AUC", f"AUC {level}% CI", *cols[1:]], class_rows)
    if kind == "survival" and pooled.get("groups"):
        group_rows = [
            [g, b.get("n"), b.get("n_events"), b.get("median_survival")] for g, b in pooled["groups"].items()
        ]
        body += "<h3>Risk groups (split at the median predicted risk)</h3>"
        body += table(["group", "patients", "events", "median survival"], group_rows)
    return section("metrics", "Performance", body)


def figures_section(df: pd.DataFrame | None, spec: PredictionSpec) -> str:
    from mil.evaluate.plots import write_plots

    if df is None:
        return section("figures", "Figures", note("The run folder has no predictions.csv."))
    truth = spec.truth_columns()
    df = df.dropna(subset=truth)
    if df.empty:
        return section("figures", "Figures", note("No predictions with a known truth to plot."))
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_plots(df, spec, Path(tmp))
        images = [img(p.read_bytes(), p.stem) for p in paths]
    names = {"roc": "ROC curves", "confusion": "confusion matrix", "km": "Kaplan-Meier curves"}
    caption = ", ".join(names.get(p.stem, p.stem) for p in paths)
    return section("figures", f"Figures: {caption}", f'<div class="figs">{"".join(images)}</div>')


def predictions_section(df: pd.DataFrame | None, spec: PredictionSpec, groups: dict[str, str]) -> str:
    if df is None:
        return section(
            "predictions", "Per-patient predictions", note("The run folder has no predictions.csv.")
        )
    cols = ["patient_id", "fold", *spec.truth_columns(), *spec.prediction_columns()]
    cols = list(dict.fromkeys(c for c in cols if c in df.columns))
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
