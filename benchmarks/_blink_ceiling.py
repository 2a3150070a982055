"""How far any threshold on the blink cues we have could go: the ceiling behind the blink F1 figure.

`bench accuracy` scores the pipeline's blink flag against MEYE's blink truth. This module asks a different question
of the same frames: with the eye-closure network's probability (each subject scored by the model trained without
it) and the lids' openness, both computed on every frame, what is the best F1 any single threshold on the network,
or any pair of thresholds on the network and the lids, reaches? Those thresholds are chosen on the very frames they
are scored on, so the figures are an upper bound for what tuning the pipeline's rules could give, not a held-out
result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NETWORK_THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)
OPENNESS_THRESHOLDS = np.round(np.arange(0.1, 1.0, 0.05), 2)
OPEN_LIDS = 0.9  # "the lids read the eye open": the misses the lids cannot help with


@dataclass(frozen=True, slots=True)
class BlinkCeiling:
    auc: float  # the network's probability ranked against the truth (0.5 = chance, 1 = perfect)
    network_f1: float  # best F1 of "probability >= t" over NETWORK_THRESHOLDS
    network_threshold: float
    combined_f1: float  # best F1 of "probability >= t or openness < u" over both grids
    combined_thresholds: tuple[float, float]
    positives: int
    misses_open_lids: int  # blink-truth frames the best combination misses where the lids read >= OPEN_LIDS open


def precision_recall_f1(true_positives: int, false_positives: int, false_negatives: int) -> tuple[float, float, float]:
    precision = true_positives / max(true_positives + false_positives, 1)
    recall = true_positives / max(true_positives + false_negatives, 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-9)


def f1_score(predicted: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> float:
    true_positives = int(np.count_nonzero(predicted & truth))
    false_positives = int(np.count_nonzero(predicted)) - true_positives
    false_negatives = int(np.count_nonzero(truth)) - true_positives
    return precision_recall_f1(true_positives, false_positives, false_negatives)[2]


def rank_auc(scores: npt.NDArray[np.float64], truth: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted half; 0.5 when one class is absent."""
    positives = int(np.count_nonzero(truth))
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Tied scores share their mean rank.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[truth].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def blink_ceiling(
    probability: npt.NDArray[np.float64], openness: npt.NDArray[np.float64], truth: npt.NDArray[np.bool_]
) -> BlinkCeiling:
    """`probability`: the network's, per frame; `openness`: the lids' (no network), per frame; `truth`: blink."""
    network = [(f1_score(probability >= t, truth), float(t)) for t in NETWORK_THRESHOLDS]
    network_f1, network_threshold = max(network)
    combined = [
        (f1_score((probability >= t) | (openness < u), truth), (float(t), float(u)))
        for t in NETWORK_THRESHOLDS
        for u in OPENNESS_THRESHOLDS
    ]
    combined_f1, (t_best, u_best) = max(combined)
    missed = truth & ~((probability >= t_best) | (openness < u_best))
    return BlinkCeiling(
        auc=rank_auc(probability, truth),
        network_f1=network_f1,
        network_threshold=network_threshold,
        combined_f1=combined_f1,
        combined_thresholds=(t_best, u_best),
        positives=int(np.count_nonzero(truth)),
        misses_open_lids=int(np.count_nonzero(missed & (openness >= OPEN_LIDS))),
    )
