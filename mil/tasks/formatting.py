"""How metrics read: the one format of an estimate with its CI, and the per-class rows that classification and
multi-label share. `mil train`, `mil evaluate`, `mil report` and `mil demo` all print through these.

A CI value is a metrics.json CI object {estimate, low, high, reason?} or a plain number (accuracy).
"""

from __future__ import annotations

from typing import Any


def ci_cells(value: dict[str, Any] | float | None) -> tuple[str, str]:
    """(estimate, interval) as text: ("0.812", "0.700-0.900"); the reason stands in for a missing interval
    and "-" for a missing number."""
    if not isinstance(value, dict):
        return ("-" if value is None else f"{value:.3f}", "")
    est, low, high = value.get("estimate"), value.get("low"), value.get("high")
    interval = value.get("reason", "")
    # "0.700-0.900", but "-1.074 to -0.458" where a minus sign would blur the hyphen
    if low is not None and high is not None:
        interval = f"{low:.3f} to {high:.3f}" if min(low, high) < 0 else f"{low:.3f}-{high:.3f}"
    return ("-" if est is None else f"{est:.3f}", interval)


def format_ci(value: dict[str, Any] | float | None, level: int = 95) -> str:
    """One cell: "0.812 (95% CI 0.700-0.900)", "0.812" without an interval, "n/a (reason)" when undefined."""
    est, interval = ci_cells(value)
    if est == "-":
        reason = value.get("reason", "undefined") if isinstance(value, dict) and value else ""
        return f"n/a ({reason})" if reason else "n/a"
    has_interval = isinstance(value, dict) and value.get("low") is not None and value.get("high") is not None
    return f"{est} ({level}% CI {interval})" if has_interval else est


def per_class_rows(block: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(f"AUC {class}", estimate, interval) for each class or label of a block with `per_class`."""
    return [(f"AUC {name}", *ci_cells(row["auc"])) for name, row in (block.get("per_class") or {}).items()]


def per_class_html(block: dict[str, Any], level: int, heading: str) -> str:
    """The report's per-class table: AUC with its CI and the threshold metrics."""
    from mil.report.html import table

    per_class = block.get("per_class") or {}
    if not per_class:
        return ""
    cols = ["sensitivity", "specificity", "precision", "f1", "support"]
    rows = [[name, *ci_cells(row.get("auc")), *[row.get(c) for c in cols]] for name, row in per_class.items()]
    return f"<h3>{heading}</h3>" + table(["class", "AUC", f"AUC {level}% CI", *cols], rows)


def comparison_line(comparison: dict[str, Any], metric_label: str, name: str, against: str) -> str:
    """The verdict of a head-vs-baseline comparison (`mil.evaluate.compare`), claiming no more than its CI:
    "macro AUC: head − pooled_stats = -0.040 [-0.100, +0.020]: no evidence the head adds to the pooled
    statistics" (`name`: the baseline's name, `against`: what it is)."""
    diff = comparison.get("difference") or {}
    est, low, high = diff.get("estimate"), diff.get("low"), diff.get("high")
    start = f"{metric_label}: head − {name}"
    if est is None:
        return f"{start}: n/a ({diff.get('reason', 'undefined')})"
    start += f" = {est:+.3f}"
    if low is None or high is None:
        reason = diff.get("reason", "no interval")
        return f"{start} (no CI: {reason}); without an interval it shows no evidence either way"
    start += f" [{low:+.3f}, {high:+.3f}]"
    if low > 0:
        return f"{start}: the head scores above {against} (the 95% CI excludes 0)"
    if high < 0:
        return f"{start}: the head scores below {against} (the 95% CI excludes 0)"
    return f"{start}: no evidence the head adds to {against}"


COMPARISON_HEADER = ("model", "estimate", "95% CI", "head − model", "95% CI (paired)")


def comparison_rows(
    metric: str, head: dict[str, Any], baselines: dict[str, Any], comparison: dict[str, Any], head_label: str
) -> list[tuple[str, ...]]:
    """Rows of COMPARISON_HEADER: the head's pooled `metric` (`head`: its pooled block), then each baseline's
    with head minus baseline (a baseline that did not run shows why). Read from metrics.json's pooled,
    baselines and comparison blocks."""
    rows = [(head_label, *ci_cells(head.get(metric)), "", "")]
    for name, record in baselines.items():
        if name in comparison:
            rows.append(
                (name, *ci_cells(comparison[name].get("baseline")), *ci_cells(comparison[name]["difference"]))
            )
        else:
            rows.append((name, "-", f"{record.get('status', 'not run')}: {record.get('reason', '')}", "", ""))
    return rows
