"""`python build.py bench instructions`: the harness in its quick mode, and (slow) one real callgrind count."""

from __future__ import annotations

import re
import shutil

import pytest
from benchmarks.instructions import main


def test_quick_instructions_benchmark_runs_its_child(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--presets", "bench90"]) == 0
    assert "the child ran bench90" in capsys.readouterr().out


@pytest.mark.slow
def test_callgrind_counts_a_plausible_number_of_instructions_per_frame(capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    assert main(["--frames", "20", "--presets", "bench90"]) == 0
    found = re.search(r"bench90\s+([\d.]+) M instructions/frame", capsys.readouterr().out)
    assert found is not None
    assert 1.0 < float(found.group(1)) < 100.0  # measured about 9 M on 2026-12-07
