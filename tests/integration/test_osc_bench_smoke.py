"""`python build.py bench osc --quick` runs end to end and reports sane figures."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import osc as osc_bench


def test_osc_benchmark_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "osc.json"
    assert osc_bench.main(["--quick", "--seconds", "0.5", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert {e["mode"] for e in figures["encoding"]} == {"v1", "v2", "native", "module", "babble"}
    assert all(e["us_per_message"] > 0 for e in figures["encoding"])
    assert 0 < figures["update_us"]["back_to_back"] < 1000 and figures["update_us"]["after_idle"] > 0
    one, three, floor_one, floor_three = figures["processes"]
    assert one["messages_per_s"] > 100 and three["messages_per_s"] > one["messages_per_s"]
    # The floor sends what the real processes send for open eyes (they add a blink's repeats now and then).
    assert floor_one["messages_per_s"] <= one["messages_per_s"] * 1.02
    assert floor_one["messages_per_s"] >= one["messages_per_s"] * 0.9
    assert floor_three["messages_per_s"] >= three["messages_per_s"] * 0.9
    assert 0 < one["cpu_pct_total"] < 100
    # The issues' "OSC process CPU" is each process's: the busier one is the figure checked.
    assert one["cpu_pct_per_process"] == max(one["cpu_pct_left"], one["cpu_pct_right"])
