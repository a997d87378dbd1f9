"""Plots draw on the given axes and return them; only write_plots saves, and only valid PNGs."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mil.config import EvaluateConfig
from mil.evaluate.plots import plot_confusion, plot_km, plot_roc, write_plots
from mil.evaluate.survival import kaplan_meier, risk_groups
from mil.tasks import create_task
from tests.mil.evaluate.synth import classification_table, multilabel_table, survival_table

PNG = b"\x89PNG\r\n\x1a\n"


def test_roc_legend_carries_the_metric_auc():
    df, spec = classification_table(n=60)
    ax = Figure().add_subplot()
    truth = df.y_true.to_numpy()[:, None] == np.array(spec.classes)
    assert plot_roc(ax, truth, df[create_task(spec).prob_columns()].to_numpy(), spec.classes) is ax
    from mil.evaluate import compute_metrics

    aucs = compute_metrics(df, spec, EvaluateConfig(n_bootstrap=0))["pooled"]["per_class"]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    for c, text in zip(spec.classes, texts, strict=True):
        assert f"AUC {aucs[c]['auc']['estimate']:.3f}" in text


def test_confusion_cells_show_counts():
    ax = Figure().add_subplot()
    assert plot_confusion(ax, np.array([[5, 1], [2, 7]]), ["a", "b"]) is ax
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "5", "7"]


def test_km_with_at_risk_counts():
    df, _ = survival_table(n=40)
    groups, _ = risk_groups(df.risk.to_numpy())
    fits = kaplan_meier(df.time.to_numpy(), df.event.to_numpy(), groups, ("low", "high"))
    ax = Figure().add_subplot()
    assert plot_km(ax, fits) is ax
    texts = [t.get_text() for t in ax.texts]
    assert "at risk" in texts and "20" in texts  # both groups start with 20 at risk


def test_write_plots_writes_pngs_per_kind(tmp_path):
    for make in (classification_table, multilabel_table, survival_table):
        df, spec = make(n=40)
        out = tmp_path / spec.kind
        written = write_plots(df, spec, out)
        plot_files = list(create_task(spec).plots)
        assert [p.name for p in written] == plot_files
        for path in written:
            assert path.read_bytes()[:8] == PNG
        assert sorted(p.name for p in out.iterdir()) == sorted(plot_files)  # no temp files left
