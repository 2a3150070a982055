"""End to end: the virtual eye through the camera, tracker and OSC processes to a UDP socket."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
from pythonosc.osc_message import OscMessage

from app.camera.virtual_eye import GazeScript
from tests.support.service import Service

COLLECT_S = 4.0


def test_virtual_eye_gaze_reaches_osc_and_follows_ground_truth(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.2)
        osc_port = udp.getsockname()[1]
        with Service(tmp_path / "tracker-config.json") as service:
            config = {
                "osc": {"sending_port": osc_port},
                "trackers": [
                    {"name": "Left Eye", "tracker_position": "LEFT_EYE", "camera": {"capture_source": "virtual"}},
                    {"name": "Right Eye", "tracker_position": "RIGHT_EYE", "camera": {"capture_source": "virtual"}},
                ],
            }
            assert service.post("/etvr/config", json=config).status_code == 200
            started = time.monotonic()
            assert service.get("/etvr/start").json() is True

            samples: dict[str, list[tuple[float, float]]] = {}
            first_arrival = None
            deadline = started + 5.0 + COLLECT_S
            while time.monotonic() < deadline:
                try:
                    datagram = udp.recv(4096)
                except TimeoutError:
                    continue
                now = time.monotonic()
                first_arrival = first_arrival or now
                message = OscMessage(datagram)
                assert message.params and all(isinstance(p, float) for p in message.params)
                samples.setdefault(message.address, []).append((now, float(message.params[0])))
                if now - first_arrival > COLLECT_S:
                    break
            assert first_arrival is not None and first_arrival - started < 5.0, "no OSC within 5 s of start"

            status = service.get("/etvr/trackers/status").json()
            left = next(t for t in status if t["name"] == "Left Eye")
            right = next(t for t in status if t["name"] == "Right Eye")
            # Each virtual camera plays the script from its own start: each eye is compared with its own.
            opened_at = {side: t["processes"]["camera"]["source_opened_at"] for side, t in (("l", left), ("r", right))}
            print("camera start gap s", opened_at["r"] - opened_at["l"])
            assert left["processes"]["tracker"]["fps"] > 30
            # How many frames the closed-eye gate kept from the pupil search (the virtual eye blinks now and then).
            skips = left["processes"]["tracker"]["closed_eye_skips"]
            assert isinstance(skips, int) and 0 <= skips < left["processes"]["tracker"]["frames_processed"]
            short = left["processes"]["tracker"]["short_searches"]  # frames of a closing eye, searched briefly
            assert isinstance(short, int) and 0 <= short < left["processes"]["tracker"]["frames_processed"]
            # Frames that reused the last fully tracked one (the eye held still) are counted; this run is about as
            # long as the lids take to be learnt (300 plainly seen frames): few or none yet (see test_still_frames).
            still = left["processes"]["tracker"]["still_frames"]
            processed = left["processes"]["tracker"]["frames_processed"]
            assert isinstance(still, int) and 0 <= still < 0.5 * processed
            # Pupil candidates refined: about one a frame tracked in full, none while the eye is shut.
            refined = left["processes"]["tracker"]["pupil_refinements"]
            assert isinstance(refined, int) and 0.5 * (processed - still) < refined < 2.0 * processed

    for address in (
        "/avatar/parameters/LeftEyeX",
        "/avatar/parameters/RightEyeX",
        "/avatar/parameters/EyesY",
        "/avatar/parameters/LeftEyeLidExpandedSqueeze",
        "/avatar/parameters/EyesDilation",
    ):
        assert len(samples.get(address, [])) > 100, f"too few {address} messages"

    script = GazeScript(0)

    def correlation(address: str, axis: str, side: str = "l") -> float:
        times = np.array([t for t, _ in samples[address]])
        values = np.array([v for _, v in samples[address]])
        best = -1.0
        # The datagram leaves a few milliseconds after capture; allow for that lag.
        for lag_s in np.arange(0.0, 0.15, 0.01):
            states = [script.state_at(t - opened_at[side] - lag_s) for t in times]
            open_eye = np.array([s.openness > 0.6 for s in states])
            truth = np.array([getattr(s, axis) for s in states])
            best = max(best, float(np.corrcoef(truth[open_eye], values[open_eye])[0, 1]))
        return best

    assert correlation("/avatar/parameters/LeftEyeX", "gaze_x") > 0.9
    assert correlation("/avatar/parameters/RightEyeX", "gaze_x", "r") > 0.9
    assert correlation("/avatar/parameters/EyesY", "gaze_y") > 0.9


def test_an_unthrottled_virtual_eye_makes_frames_only_as_the_tracker_takes_them(tmp_path: Path) -> None:
    def counters(service: Service) -> dict[str, int]:
        processes = service.get("/etvr/trackers/status").json()[0]["processes"]
        camera, tracker = processes["camera"], processes["tracker"]
        names = {"sent": camera.get("frames_sent"), "timeouts": camera.get("reader_waits_timed_out")}
        names |= {"processed": tracker.get("frames_processed"), "skipped": tracker.get("frames_skipped")}
        return {key: value if isinstance(value, int) else -1 for key, value in names.items()}

    with Service(tmp_path / "tracker-config.json") as service:
        source = {"capture_source": "virtual:unthrottled"}
        config = {"trackers": [{"name": "Left Eye", "tracker_position": "LEFT_EYE", "camera": source}]}
        assert service.post("/etvr/config", json=config).status_code == 200
        assert service.get("/etvr/start").json() is True
        deadline = time.monotonic() + 20.0
        while counters(service)["processed"] < 100 and time.monotonic() < deadline:
            time.sleep(0.2)
        # Counted from a running start: frames made while the tracker process was still starting do not count.
        first = counters(service)
        time.sleep(2.0)
        last = counters(service)
    assert min(first.values()) >= 0 and min(last.values()) >= 0, f"counters missing from the status: {last}"
    delta = {key: last[key] - first[key] for key in first}
    print("over 2 s:", delta)
    assert delta["processed"] >= 200, "the tracker ran"
    # Without the wait the camera made ~10x the frames the tracker took, and the tracker skipped 90 % of them.
    assert delta["skipped"] <= 0.02 * delta["processed"], "frames were made only to be skipped"
    assert delta["timeouts"] == 0, "the tracker took every frame within the wait"
