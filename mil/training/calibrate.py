"""Post-hoc calibration: one temperature and a bias per output, fitted on inner held-out logits.

Why: attention heads trained to a low loss on 50-250 patients are over- (or under-) confident, and class
weights move every probability toward balanced priors; a clinician reads probabilities. Temperature scaling
(Guo et al. 2017) divides the logits by T, which keeps every ranking (AUC, c-index unchanged); the bias per
output ("bias-corrected temperature scaling", Alexandari et al. 2020) undoes the prior shift that class weights
leave. C + 1 numbers are fitted by minimising the unweighted task loss (`Task.calibration_loss`: cross-entropy,
binary cross-entropy) on logits of patients the model did not train on: the members' inner held-out patients
(crossfit) or the validation part. Never the fold's test patients. T stays within [T_MIN, T_MAX].

The fit is a MAP estimate: a Gaussian prior on log T (SD `LOG_T_SD`, centred on T = 1) and on each bias (SD
`BIAS_SD`), weighed against the summed loss of the n held-out patients, so it binds only when n is small. Why:
without it, a validation part of 12-24 patients that the model happens to separate drove T to T_MIN (logits
x20) and the test loss up 2x (MUSK1: NLL 0.38 -> 0.85; benchmarks/RESULTS.md, "Training recipe"); with ~100
cross-fitted held-out patients the prior moves T by a few per cent.

The fitted numbers live as buffers of `CalibratedHead` in every fold checkpoint, so `mil predict`, heatmaps and
reports read calibrated probabilities without knowing about calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mil.heads.base import HeadOutput
from mil.tasks import Task
from mil.training.standardize import HeadWrapper

T_MIN, T_MAX = 0.05, 20.0
LOG_T_SD = 0.5  # prior SD of log T: T within about [0.37, 2.7] unless the held-out patients say otherwise
BIAS_SD = 1.0  # prior SD of each output's bias (logits)


@dataclass(frozen=True)
class Calibration:
    temperature: float
    bias: list[float]

    def apply(self, logits: Tensor) -> Tensor:
        return logits / self.temperature + torch.as_tensor(self.bias, dtype=logits.dtype)

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "bias": list(self.bias)}


def fit_calibration(task: Task, logits: Tensor, y: Tensor) -> Calibration | None:
    """T and bias minimising the task's unweighted loss on held-out `logits` (P x C); None where the kind
    has no calibration (survival) or the held-out patients cannot inform it (fewer than 2)."""
    logits, y = logits.detach().float().clone(), y.detach().clone()  # clones: inference tensors are read-only
    if len(logits) < 2 or task.calibration_loss(logits, y) is None:
        return None
    n = len(logits)
    log_t = torch.zeros((), requires_grad=True)
    bias = torch.zeros(logits.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t, bias], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        t = log_t.clamp(float(torch.log(torch.tensor(T_MIN))), float(torch.log(torch.tensor(T_MAX)))).exp()
        prior = (log_t / LOG_T_SD) ** 2 / 2 + (bias / BIAS_SD).pow(2).sum() / 2
        loss = task.calibration_loss(logits / t + bias, y) + prior / n  # mean loss: the prior per patient
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    t = float(log_t.detach().exp().clamp(T_MIN, T_MAX))
    return Calibration(round(t, 6), [round(float(b), 6) for b in bias.detach()])


class CalibratedHead(HeadWrapper):
    """A (standardised) head whose logits are divided by a fitted temperature and shifted by a bias per
    output; attention is untouched, per-cell scores get the same affine map so logits = sum_i a_i s_i holds."""

    def __init__(self, head: nn.Module, calibration: Calibration):
        super().__init__(head)
        self.register_buffer("temperature", torch.tensor(float(calibration.temperature)))
        self.register_buffer("bias", torch.as_tensor(calibration.bias, dtype=torch.float32))

    def calibration(self) -> Calibration:
        # rounded as fitted (`fit_calibration`), so the checkpoint records the numbers metrics.json shows
        return Calibration(round(float(self.temperature), 6), [round(float(b), 6) for b in self.bias])

    def forward(self, x: Tensor, mask: Tensor, target: Tensor | None = None, **given: Tensor) -> HeadOutput:
        out = self.head(x, mask, target=target, **given)  # given: a prior's statistics (`fit.forward`)
        out.logits = out.logits / self.temperature + self.bias
        scores = out.instance_scores
        if scores is not None and scores.shape[1] == self.bias.shape[0]:
            out.instance_scores = (scores / self.temperature + self.bias[None, :, None]) * mask[:, None, :]
        return out


def ensemble_outputs_of(task: Task, logits: list[Tensor], calibrated: bool) -> Tensor:
    """One fold's member models -> the fold's task outputs (P x C): calibrated members average their logits,
    then the task's link (softmax, sigmoid); uncalibrated ones average their outputs.

    Why: the temperature is fitted on single members' held-out logits (each training patient is held out by
    one member per seed). The calibration is affine, so the mean of the calibrated members' logits is the
    calibration of their mean logit, which is as sharp as one member where the members agree. Averaging the
    calibrated members' probabilities instead softens a second time, and the ensemble came out under-confident
    (ECE up on 3 of 4 cohorts; benchmarks/RESULTS.md, "Training recipe")."""
    if calibrated:
        return task.outputs(torch.stack(logits).mean(0))
    return torch.stack([task.outputs(x) for x in logits]).mean(0)
