"""Per-instance attention of a run's fold models on one patient's bag, averaged over the models, with spread.

Where it comes from. Heads with attention (`attention_kind` "attention" or "per_class_attention") give it in
their own forward pass (`HeadOutput.attention`, B x K x N); nothing is recomputed or approximated. Heads without
attention (mean_pool, max_pool) get an instance-level attribution instead: gradient x input summed over the
feature axis, per class logit (`ATTRIBUTION_METHOD`). It was preferred over occluding single instances because
it costs one forward and C backward passes for the whole bag, where occlusion needs N forward passes (a
200k-cell smear). Its known weakness is max_pool: only the arg-max instance of each class receives gradient,
so every other cell scores exactly 0 (the ranking is honest about what that head looks at).

Ensembling. Each fold model's attention sums to 1 over the patient's bag, so their mean does too; `sd` is the
spread (population SD, ddof 0) over the fold models and shows where they disagree. One model gives sd = 0.

Comparing slides. Raw attention depends on bag size (uniform attention over N cells is 1/N), so `relative()`
divides by the bag's mean absolute value: for attention that is exactly attention x N (1 = uniform, 5 = five
times the average cell), and the same formula puts an attribution on a comparable scale. A patient's slides
are concatenated into one bag (`mil.training.data`), so a slide's cells carry the patient's attention restricted to
that slide's rows, NOT renormalised per slide: a slide whose cells drew no attention stays low, as the model
saw it, and `relative()` uses the patient's N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mil.training.checkpoint import FoldModel

ATTRIBUTION_METHOD = "gradient_x_input"
AGNOSTIC_ROW = "all"  # the name of the single attention row of a K = 1 head


@dataclass
class PatientAttention:
    """One patient's per-instance explanation, rows in the bag's order (slides concatenated by slide id).

    rows: names of the K explanation rows: the output names for per-class heads and attributions, or
        [AGNOSTIC_ROW] for a head with one attention row shared by all classes.
    mean, sd: K x N, over the fold models. scores: C x N per-instance class logits where the head has them.
    """

    patient_id: str
    names: list[str]  # output names (classes, labels, or ["risk"])
    rows: list[str]
    mean: np.ndarray
    sd: np.ndarray
    scores: np.ndarray | None
    method: str  # "attention" or ATTRIBUTION_METHOD
    slides: list[tuple[str, int, int]]  # (slide_id, start, stop) rows of each slide
    prediction: np.ndarray | None = None  # C task outputs (probabilities or risk), mean over the models

    @property
    def n(self) -> int:
        return int(self.mean.shape[1])

    @property
    def class_agnostic(self) -> bool:
        return self.rows == [AGNOSTIC_ROW]

    def row(self, name: str) -> int:
        """The explanation row to rank cells by for output `name` (the single row of a K = 1 head)."""
        if self.class_agnostic:
            return 0
        return self.rows.index(name)

    def relative(self) -> np.ndarray:
        """K x N values divided by their bag mean absolute value (attention: attention x N; see module doc)."""
        scale = np.abs(self.mean).mean(axis=1, keepdims=True)
        return np.divide(self.mean, scale, out=np.zeros_like(self.mean), where=scale > 0)

    def slide_rows(self, slide_id: str) -> slice:
        for sid, start, stop in self.slides:
            if sid == slide_id:
                return slice(start, stop)
        raise KeyError(slide_id)


def method_of(models: list[FoldModel]) -> str:
    return "attention" if models[0].head.attention_kind != "none" else ATTRIBUTION_METHOD


def explain_patient(
    models: list[FoldModel],
    features: np.ndarray,
    names: list[str],
    patient_id: str = "",
    slides: list[tuple[str, int, int]] | None = None,
    device: str | torch.device = "cpu",
) -> PatientAttention:
    """Attention (or attribution) of every fold model on one patient's N x D bag, averaged with spread."""
    from mil.tasks import create_task
    from mil.training.predict import ensemble_outputs, fold_ensemble

    slides = slides if slides is not None else [(patient_id, 0, len(features))]
    outs = ensemble_outputs(models, features, device=device)
    task = create_task(models[0].spec)
    prediction = fold_ensemble(task, models, [o.logits for o in outs])[0].numpy()
    scores = None
    if outs[0].instance_scores is not None:
        scores = np.stack([o.instance_scores[0].numpy() for o in outs]).mean(0)
    if method_of(models) == "attention":
        per_model = np.stack([o.attention[0].numpy() for o in outs])  # M x K x N
        k = per_model.shape[1]
        if k not in (1, len(names)):
            raise ValueError(f"attention has {k} rows for {len(names)} outputs; expected 1 or one per output")
        # one row per output (a single-output head's one row is that output's), else one shared row
        rows, method = (list(names) if k == len(names) else [AGNOSTIC_ROW]), "attention"
    else:
        per_model = np.stack([gradient_x_input(m.head.to(device), features) for m in models])  # M x C x N
        rows, method = list(names), ATTRIBUTION_METHOD
    return PatientAttention(
        patient_id=patient_id,
        names=list(names),
        rows=rows,
        mean=per_model.mean(0),
        sd=per_model.std(0),
        scores=scores,
        method=method,
        slides=list(slides),
        prediction=prediction,
    )


def gradient_x_input(head: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """C x N: for each output logit c, sum over features of x_i * d logit_c / d x_i, for every instance i
    at once (one forward, one backward per output). The head stays in eval mode (no dropout)."""
    device = next(head.parameters()).device
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=device)[None].requires_grad_(True)
    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
    head.eval()
    with torch.enable_grad():
        logits = head(x, mask).logits[0]
        rows = []
        for c in range(logits.shape[0]):
            (grad,) = torch.autograd.grad(logits[c], x, retain_graph=c < logits.shape[0] - 1)
            rows.append((grad[0] * x[0]).sum(-1))
    return torch.stack(rows).detach().float().cpu().numpy()
