"""`bench pipeline --quick` and `profile` run end to end against the real service and write their reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.pipeline import main as pipeline_main
from benchmarks.profile_service import main as profile_main
from benchmarks.profile_service import py_spy_path


def test_quick_pipeline_benchmark_measures_the_whole_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pipeline_main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "out/in %" in out and "p99 ms" in out and "idle (service up, trackers stopped)" in out

    report = json.loads(next(tmp_path.glob("pipeline-*.json")).read_text())
    summary = report["cases"][0]["summary"]
    # Frames really crossed camera -> tracker -> OSC -> UDP, with a capture-to-send latency that makes sense.
    assert summary["eyes_seen"] == 1
    assert summary["camera_fps_in"] > 20 and summary["osc_updates_per_s"] > 20
    assert 0.5 < summary["out_in_ratio_min"] <= 1.0
    assert 0.0 < summary["latency_ms"]["p50"] < 100.0
    kinds = summary["cpu_pct_by_kind"]
    assert kinds["camera"] > 0 and kinds["tracker"] > 0 and "osc" in kinds and "main" in kinds
    assert 50.0 < summary["rss_mb_total"] < 2000.0
    assert report["idle"]["cpu_pct_total"] >= 0.0
    assert Path(report["histogram_png"]).stat().st_size > 1000
    assert any(t["target"].startswith("idle") for t in report["targets"])


@pytest.mark.skipif(py_spy_path() is None, reason="py-spy is not installed")
def test_profile_command_records_every_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # With the waits kept every process has samples (a mostly idle main process may have no busy one in 2 s).
    code = profile_main(["--seconds", "2", "--rate", "50", "--waits", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    if code != 0 and "ptrace" in captured.err:
        pytest.skip("py-spy has no ptrace rights here")
    assert code == 0
    profile = json.loads(next(tmp_path.glob("profile-*.speedscope.json")).read_text())
    names = " ".join(p["name"] for p in profile["profiles"])
    for role in ("[main", "[LEFT_EYE camera]", "[RIGHT_EYE tracker]", " osc]"):
        assert role in names, f"no samples of {role}"
    summary = next(tmp_path.glob("profile-*.txt")).read_text()
    assert "LEFT_EYE tracker: CPU" in summary and "total CPU" in summary
