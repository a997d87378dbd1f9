"""Synthetic prediction tables for the evaluation tests (small, seeded, built in memory)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mil.tasks import TaskSpec


def classification_table(
    n: int = 120, classes=("APL", "AML", "healthy"), signal: float = 1.5, seed: int = 0, folds: int = 3
):
    """Probabilities from softmax(noise + signal on the true class); y_pred = argmax, as training writes it."""
    rng = np.random.default_rng(seed)
    classes = list(classes)
    y = np.arange(n) % len(classes)
    rng.shuffle(y)
    logits = rng.normal(size=(n, len(classes)))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    df = pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "fold": np.arange(n) % folds,
            "y_true": np.array(classes)[y],
            "y_pred": np.array(classes)[probs.argmax(axis=1)],
        }
    )
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, j]
    return df, TaskSpec("classification", "diagnosis", classes)


def survival_table(n: int = 120, seed: int = 0, censor: float = 0.3, folds: int = 3):
    """Exponential times whose log-hazard is the risk plus noise; random censoring."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    time = rng.exponential(np.exp(-risk)) * 12
    event = (rng.random(n) > censor).astype(int)
    df = pd.DataFrame(
        {
            "patient_id": [f"S{i:03d}" for i in range(n)],
            "fold": np.arange(n) % folds,
            "time": np.round(time, 1),
            "event": event,
            "risk": risk + rng.normal(scale=0.5, size=n),
        }
    )
    return df, TaskSpec("survival", ["os_months", "dead"], [])


def multilabel_table(n: int = 150, seed: int = 0, folds: int = 3):
    rng = np.random.default_rng(seed)
    labels = ["NPM1", "CBFB_MYH11"]
    truth = np.stack([rng.random(n) < 0.35, rng.random(n) < 0.15], axis=1).astype(int)
    probs = 1 / (1 + np.exp(-(2.0 * truth - 1 + rng.normal(size=truth.shape))))
    df = pd.DataFrame({"patient_id": [f"M{i:03d}" for i in range(n)], "fold": np.arange(n) % folds})
    for j, name in enumerate(labels):
        df[f"true_{name}"] = truth[:, j]
        df[f"prob_{name}"] = probs[:, j]
    return df, TaskSpec("multilabel", labels, labels)
