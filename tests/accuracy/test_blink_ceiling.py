"""The blink ceiling's arithmetic (benchmarks/_blink_ceiling.py) on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks._blink_ceiling import blink_ceiling, f1_score, rank_auc


def test_rank_auc_perfect_chance_and_ties() -> None:
    truth = np.array([False, False, True, True])
    assert rank_auc(np.array([0.1, 0.2, 0.8, 0.9]), truth) == 1.0
    assert rank_auc(np.array([0.9, 0.8, 0.2, 0.1]), truth) == 0.0
    assert rank_auc(np.array([0.5, 0.5, 0.5, 0.5]), truth) == 0.5
    # Positives 0.5 and 0.9 against negatives 0.1 and 0.5: three pairs won, one tied (half): 3.5 of 4.
    assert rank_auc(np.array([0.1, 0.5, 0.5, 0.9]), truth) == pytest.approx(0.875)
    assert rank_auc(np.array([0.3, 0.4]), np.array([False, False])) == 0.5


def test_f1_score() -> None:
    truth = np.array([True, True, False, False])
    assert f1_score(np.array([True, True, False, False]), truth) == 1.0
    assert f1_score(np.array([False, False, True, True]), truth) == 0.0
    # precision 1/2, recall 1/2
    assert f1_score(np.array([True, False, True, False]), truth) == pytest.approx(0.5)


def test_the_lids_catch_what_the_network_misses() -> None:
    # Blinks 0-3: the network sees 0-1, the lids (openness under 0.3) see 2; blink 3 looks open to both.
    probability = np.array([0.9, 0.8, 0.1, 0.1, 0.1, 0.2, 0.1, 0.3])
    openness = np.array([0.1, 0.5, 0.2, 0.95, 1.0, 0.9, 0.8, 1.0])
    truth = np.array([True, True, True, True, False, False, False, False])
    ceiling = blink_ceiling(probability, openness, truth)
    # Pairs: 0.9 and 0.8 beat all four negatives; each 0.1 ties two negatives (0.1) and loses to two: 10 of 16.
    assert ceiling.auc == pytest.approx(10 / 16)
    assert ceiling.network_f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 2/4
    assert ceiling.combined_f1 == pytest.approx(2 * 1.0 * 0.75 / 1.75)  # precision 1, recall 3/4
    assert ceiling.positives == 4 and ceiling.misses_open_lids == 1
