"""`python build.py bench outputs`: saved results compare identical on the same code, and a changed result shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from benchmarks.outputs import COLUMNS, main


def test_the_same_code_gives_identical_results_and_a_changed_frame_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "before.npz"
    assert main(["--quick", "--save", str(saved)]) == 0
    assert main(["--quick", "--compare", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "bench90                        120 frames identical" in out
    assert out.rstrip().endswith("identical")

    with np.load(saved) as data:
        sets = {name: data[name].copy() for name in data.files}
    assert sets["hard"].shape == (60, len(COLUMNS))
    sets["hard"][17, COLUMNS.index("openness")] += 0.25
    changed = tmp_path / "changed.npz"
    np.savez(changed, **sets)
    assert main(["--quick", "--compare", str(changed)]) == 1
    out = capsys.readouterr().out
    assert "hard                             1 of 60 frames differ (first: frame 17)" in out
    assert "largest difference 0.25 in openness, pupil centre 0 px" in out
    assert out.rstrip().endswith("DIFFERENT")


def test_a_name_without_npz_compares_with_the_file_save_wrote(tmp_path: Path) -> None:
    # numpy adds .npz when saving; the same name given to --compare must find that file.
    assert main(["--quick", "--save", str(tmp_path / "before")]) == 0
    assert (tmp_path / "before.npz").is_file()
    assert main(["--quick", "--compare", str(tmp_path / "before")]) == 0


def test_a_missing_file_is_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--compare", str(tmp_path / "none.npz")]) == 2
    assert "no saved results" in capsys.readouterr().out
