"""`mil report`: one self-contained HTML file; its structure without a browser, and a headless-Chromium render."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from features.core.errors import InputError
from mil.cli import app
from mil.config import ReportConfig
from mil.report.build import report
from tests.mil.explain.cohort import copy_store, get_tiny, point_source
from tests.train_helpers import SINGLE_MODEL


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_tiny(tmp_path_factory)


SECTIONS = {"metrics", "baselines", "figures", "predictions", "galleries", "discovery", "provenance"}


class Page(HTMLParser):
    """Collects what the structural checks need: image sources, section ids, links and scripts, table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.sections: set[str] = set()
        self.refs: list[str] = []  # href/src of anything other than <img>
        self.rows_in_sortable = 0
        self._sortable = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "section":
            self.sections.add(a.get("id", ""))
        elif tag == "table" and "sortable" in (a.get("class") or ""):
            self._sortable += 1
        elif tag == "tr" and self._sortable:
            self.rows_in_sortable += 1
        for key in ("href", "src"):
            if key in a and tag != "img":
                self.refs.append(a[key])

    def handle_endtag(self, tag):
        if tag == "table" and self._sortable:
            self._sortable -= 1


def parse(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return text, page


def test_report_is_self_contained_with_every_section(tiny, tmp_path):
    out = tmp_path / "report.html"
    summary = report(tiny.abmil, tiny.cells, out, config=ReportConfig(top_k=8, clusters=3))
    assert (
        summary.n_patients == 12
        and summary.missing_sources == {}
        and set(summary.clusters) == {"AML", "APL", "healthy"}
    )
    text, page = parse(out)
    assert page.sections >= SECTIONS
    assert "http://" not in text and "https://" not in text and "<link" not in text and page.refs == []
    assert len(page.images) >= 1 + 2 + 3 + 3  # head vs baseline ROC, ROC + confusion, 3 galleries, 3 clusters
    assert (
        "Head vs baseline" in text and "abmil (head)" in text and "macro AUC: head − pooled_stats = " in text
    )
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert page.rows_in_sortable == 1 + 12  # header + one row per patient
    assert "macro_auc" in text and "95% CI" in text and "enrichment" in text
    assert "top_k 8, per_patient 2, clusters 3" in text  # the report section it was made with
    with pytest.raises(InputError, match="--overwrite"):
        report(tiny.abmil, tiny.cells, out)
    with pytest.raises(InputError, match="is a folder"):
        report(tiny.abmil, tiny.cells, tmp_path)


def test_report_on_slides_with_a_moved_source_shows_grey_tiles(tiny, tmp_path):
    store = copy_store(tiny.slides, tmp_path / "slides.bags")
    point_source(store, "P004_s1", tmp_path / "gone.tiff")
    out = tmp_path / "slides.html"
    summary = report(tiny.clam_mb, store, out, config=ReportConfig(top_k=6, clusters=2))
    assert set(summary.missing_sources) == {"P004_s1"} and "not found" in summary.missing_sources["P004_s1"]
    text, page = parse(out)
    assert page.sections >= SECTIONS and "missing cells: P004_s1" in text


def test_report_cli(tiny, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(tiny.mean_pool), "--bags", str(tiny.cells), "-o", str(out),
                                      "--top-k", "4", "--clusters", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "gradient_x_input" in result.output and out.stat().st_size > 10_000


def test_report_renders_in_headless_chromium(tiny, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not on PATH (apt-get install -y chromium); structure is tested without it")
    out = tmp_path / "report.html"
    report(tiny.abmil, tiny.cells, out, config=ReportConfig(top_k=8, clusters=3))
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1400,4000", out.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (4000, 1400)
    not_background = (np.abs(pixels.astype(int) - [250, 250, 252]).sum(-1) > 30).mean()
    assert not_background > 0.15 and pixels.std() > 20  # header, tables, plots and cell montages drawn
    # the cell galleries are drawn: some pixels carry the stain's purple (cells), not just text and plots
    purple = (pixels[..., 2] > pixels[..., 1] + 40) & (pixels[..., 0] > pixels[..., 1] + 20)
    assert purple.mean() > 0.01


def test_report_on_survival_has_km_curves_and_risk_groups(tiny, tmp_path):
    import torch

    from mil.config import EvaluateConfig, TrainConfig
    from mil.training.train import train_cv

    cfg = TrainConfig(
        time_col="os_months", event_col="os_event", head="clam_mb", folds=2, epochs=3, lr=5e-3, batch_size=4,
        allow_missing=True, device="cpu", **SINGLE_MODEL,
    )  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_cv(tiny.cells, tiny.labels, cfg, tmp_path / "run", evaluate=EvaluateConfig(n_bootstrap=10))
    finally:
        torch.set_num_threads(before)
    out = tmp_path / "surv.html"
    summary = report(tmp_path / "run", tiny.cells, out, config=ReportConfig(top_k=4, clusters=2))
    assert summary.clusters == {"risk": 2}
    text, page = parse(out)
    assert "Kaplan-Meier" in text and "c_index" in text and "high risk (predicted)" in text
    assert "c-index: head − pooled_stats = " in text and 'alt="head vs baselines"' in text
    assert all(src.startswith("data:image/png;base64,") for src in page.images)


def test_baseline_section_without_metrics_json_does_not_claim_the_run_has_none(tmp_path):
    """The baselines' figures live in metrics.json: without it the report cannot show them, which is not
    the same as a run trained without baselines."""
    from mil.report.sections import comparison_section

    html = comparison_section(tmp_path, None, "abmil")
    assert "no metrics.json" in html and "has no baselines" not in html
    assert "has no baselines" in comparison_section(tmp_path, {"baselines": {}}, "abmil")


def test_report_cli_names_a_few_grey_slides_then_counts_the_rest(tiny, tmp_path):
    """A moved source folder makes every slide grey: a few lines on screen, then a count, not one per slide."""
    from features.bagstore import BagStore

    store = copy_store(tiny.slides, tmp_path / "slides.bags")
    slides = sorted(m.slide_id for m in BagStore(store).metas())
    assert len(slides) > 4
    for slide in slides:
        point_source(store, slide, tmp_path / f"gone-{slide}.tiff")
    out = tmp_path / "grey.html"
    result = CliRunner().invoke(app, ["report", str(tiny.clam_mb), "--bags", str(store), "-o", str(out),
                                      "--top-k", "4", "--clusters", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count("shown as grey tiles") == 4  # 3 named + the count
    assert f"and {len(slides) - 3} more slides shown as grey tiles" in result.output
    text, _ = parse(out)
    assert all(f"missing cells: {s}" in text for s in slides)
