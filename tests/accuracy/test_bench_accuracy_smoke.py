"""`python build.py bench accuracy --quick` runs end to end and prints every section."""

from __future__ import annotations

import pytest
from benchmarks.accuracy import main


def test_quick_accuracy_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "virtual eye 'easy'" in out and "virtual eye 'hard'" in out
    assert "pipeline (default)" in out and "HSRAC" in out and "speed:" in out
    assert "held-out subjects" in out or "MEYE: skipped" in out
    assert "blink ceiling" in out or "MEYE: skipped" in out
    assert "seed 11, held out" in out and "targets" in out and "hard set within 2 px" in out
    assert "PuRe (cheshm)" in out or "MEYE: skipped" in out
