"""Diagnostic-cell discovery: which kinds of cells drive a class ("which cells drive APL").

For each output c:
1. Candidates: the `top_per_patient` highest-attention cells (row c, relative attention) of every patient of
   class c. These are the cells the model used to call c.
2. Cluster the candidates in embedding space (k-means, seeded; features z-scored with the cohort's mean and SD
   so no single feature's units dominate). A cluster is a kind of cell the model attends to.
3. Enrichment: how common that kind of cell is in class-c patients versus all others. Every patient's cells
   are represented by a seeded random sample (`sample_per_patient`, which bounds memory for 200k-cell smears);
   a sampled cell counts for cluster k when k is its nearest centre AND it lies within the cluster's radius
   (95th percentile of the members' distances; a far-away cell is not "that kind of cell"). Per patient this
   gives the share of cells of kind k; enrichment = (mean share in class c + eps) / (mean share in others +
   eps), eps = half a cell of a median sample, and p = one-sided Mann-Whitney U on the per-patient shares
   (patients, not cells, are the independent units: a cell-level Fisher test would count one smear's 500 blasts
   as 500 pieces of evidence).
With a cell typer (a cell model's `predict`, `mil report --cells`), each cluster also gets its type mix: the
share of its candidate cells of each predicted type ("cluster 0: 91 % abnormal promyelocyte, enriched 24x").
Clusters are ranked by enrichment. A cluster of normal cells the model also looks at scores about 1. Asking
for more clusters than there are kinds of cells splits one kind into sub-clusters whose shares add up (each is
enriched); fewer clusters merge kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mil.explain.attention import PatientAttention

RADIUS_QUANTILE = 0.95


@dataclass
class CellRef:
    """A cell located in the store: the bag row `instance` of slide `slide_id`."""

    patient_id: str
    slide_id: str
    instance: int
    att_rel: float


@dataclass
class Cluster:
    name: str  # the output (class) it was discovered for
    cluster: int  # rank by enrichment, 0 = most enriched
    n_cells: int  # candidate cells in the cluster
    n_patients: int  # class patients contributing candidates
    freq_in_class: float  # mean per-patient share of cells of this kind, class patients
    freq_in_others: float  # the same over all other patients
    enrichment: float
    p_value: float | None  # one-sided Mann-Whitney U; None when a group is empty
    mean_att_rel: float
    members: list[CellRef] = field(default_factory=list)  # top cells, spread over patients, for a montage
    type_mix: dict[str, float] = field(default_factory=dict)  # predicted type -> share of the cluster's cells

    def mix_words(self, top: int = 2) -> str:
        """ "91 % abnormal promyelocyte, 6 % promyelocyte" (the largest shares), or "" without types."""
        ranked = sorted(self.type_mix.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{100 * share:.0f} % {name.replace('_', ' ')}" for name, share in ranked)


@dataclass
class _Patient:
    patient_id: str
    sample: np.ndarray  # S x D float32
    candidates: dict[
        str, tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]
    ]  # name -> feats, att_rel, where


class DiscoveryCollector:
    """Feed `add()` one patient at a time (bounded memory), then call `clusters()` once."""

    def __init__(
        self,
        names: list[str],
        top_per_patient: int = 16,
        sample_per_patient: int = 256,
        seed: int = 0,
        cell_types: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        """`cell_types`: N x D embeddings -> N type names, to give each cluster its type mix."""
        self.names = list(names)
        self.cell_types = cell_types
        self.top_per_patient = top_per_patient
        self.sample_per_patient = sample_per_patient
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._patients: list[_Patient] = []

    def add(self, features: np.ndarray, att: PatientAttention) -> None:
        n = len(features)
        keep = min(n, self.sample_per_patient)
        sample = features[np.sort(self._rng.choice(n, keep, replace=False))] if keep < n else features
        rel = att.relative()
        starts = np.array([s for _, s, _ in att.slides])
        candidates = {}
        for name in self.names:
            values = rel[att.row(name)]
            top = np.argsort(-values, kind="stable")[: self.top_per_patient]
            slide_i = np.searchsorted(starts, top, side="right") - 1
            where = [(att.slides[s][0], int(t - att.slides[s][1])) for s, t in zip(slide_i, top, strict=True)]
            candidates[name] = (features[top].astype(np.float32), values[top], where)
        self._patients.append(_Patient(att.patient_id, sample.astype(np.float32), candidates))

    def clusters(
        self, groups: dict[str, set[str]], n_clusters: int, members: int
    ) -> dict[str, list[Cluster]]:
        """Clusters per output name; `groups[patient]` = the names the patient belongs to; `members` cells of
        each cluster are kept for its montage."""
        if not self._patients:
            return {}
        samples = [p.sample for p in self._patients]
        pooled = np.concatenate(samples)
        mu, sd = pooled.mean(0), pooled.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        owner = np.repeat(np.arange(len(samples)), [len(s) for s in samples])
        z_sample = (pooled - mu) / sd
        eps = 0.5 / max(1.0, float(np.median([len(s) for s in samples])))
        out = {}
        for name in self.names:
            inside = np.array([name in groups.get(p.patient_id, set()) for p in self._patients])
            if inside.any():
                out[name] = self._discover(name, inside, z_sample, owner, mu, sd, eps, n_clusters, members)
        return out

    def _discover(self, name, inside, z_sample, owner, mu, sd, eps, n_clusters, members) -> list[Cluster]:
        from scipy.stats import mannwhitneyu
        from sklearn.cluster import KMeans

        chosen = [p for p, ok in zip(self._patients, inside, strict=True) if ok]
        feats = np.concatenate([p.candidates[name][0] for p in chosen])
        att_rel = np.concatenate([p.candidates[name][1] for p in chosen])
        where = [(p.patient_id, *w) for p in chosen for w in p.candidates[name][2]]
        who = np.repeat(np.arange(len(chosen)), [len(p.candidates[name][1]) for p in chosen])
        z = (feats - mu) / sd
        k = max(1, min(n_clusters, len(np.unique(z, axis=0))))
        km = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(z)
        dist = np.linalg.norm(z - km.cluster_centers_[km.labels_], axis=1)
        radius = np.array([np.quantile(dist[km.labels_ == j], RADIUS_QUANTILE) for j in range(k)]) + 1e-6
        # every sampled cell of every patient: nearest centre, and whether it is within that centre's radius
        centres = km.cluster_centers_
        d2 = (z_sample**2).sum(1)[:, None] - 2 * z_sample @ centres.T + (centres**2).sum(1)[None, :]  # S x k
        nearest = d2.argmin(1)
        near_d = np.sqrt(np.clip(d2[np.arange(len(nearest)), nearest], 0, None))
        member = near_d <= radius[nearest]
        counts = np.zeros((len(self._patients), k))
        np.add.at(counts, (owner[member], nearest[member]), 1.0)
        share = counts / np.bincount(owner, minlength=len(self._patients))[:, None]
        types = None if self.cell_types is None else np.asarray(self.cell_types(feats), dtype=object)
        found = []
        for j in range(k):
            sel = np.flatnonzero(km.labels_ == j)
            f_in, f_out = share[inside, j], share[~inside, j]
            p = None
            if len(f_in) and len(f_out) and np.ptp(np.concatenate([f_in, f_out])) > 0:
                p = float(mannwhitneyu(f_in, f_out, alternative="greater").pvalue)
            mean_out = float(f_out.mean()) if len(f_out) else 0.0
            found.append(
                Cluster(
                    name=name,
                    cluster=j,
                    n_cells=len(sel),
                    n_patients=len(np.unique(who[sel])),
                    freq_in_class=float(f_in.mean()),
                    freq_in_others=mean_out,
                    enrichment=float((f_in.mean() + eps) / (mean_out + eps)),
                    p_value=p,
                    mean_att_rel=float(att_rel[sel].mean()),
                    members=_spread(sel, who, att_rel, where, members),
                    type_mix={} if types is None else _mix(types[sel]),
                )
            )
        found.sort(key=lambda c: (-c.enrichment, c.p_value if c.p_value is not None else 1.0))
        for rank, c in enumerate(found):
            c.cluster = rank
        return found


def _mix(types: np.ndarray) -> dict[str, float]:
    names, counts = np.unique(types.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {str(names[i]): float(counts[i] / counts.sum()) for i in order}


def _spread(sel: np.ndarray, who: np.ndarray, att_rel: np.ndarray, where: list, n: int) -> list[CellRef]:
    """Up to n members: each patient's best cell first, then each patient's second best, ... (so a montage
    shows the kind of cell across patients, not one patient's cells)."""
    order = sel[np.lexsort((-att_rel[sel], who[sel]))]  # by patient, best first
    first = np.r_[True, who[order][1:] != who[order][:-1]]
    rank = np.arange(len(order)) - np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    pick = order[np.lexsort((-att_rel[order], rank))][:n]
    return [CellRef(where[i][0], where[i][1], where[i][2], float(att_rel[i])) for i in pick]
