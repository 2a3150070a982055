"""The real service: OSC commands in (recenter, recalibrate, sync blink) seen through the API, a port in
use reported while tracking goes on, OSCQuery answers over HTTP and mDNS, per-target status."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from app.osc.discovery import VrchatOscFinder
from app.osc.oscquery import OSC_UDP_SERVICE, OSCJSON_SERVICE, OscQueryService
from tests.support.service import Service, free_port, wait_until

TRACKERS = [
    {"name": "L", "tracker_position": "LEFT_EYE", "camera": {"capture_source": "virtual"}},
    {"name": "R", "tracker_position": "RIGHT_EYE", "camera": {"capture_source": "virtual"}},
]


def send_bool(port: int, address: str, value: bool) -> None:
    builder = OscMessageBuilder(address)
    builder.add_arg(value)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(builder.build().dgram, ("127.0.0.1", port))


def osc_status(service: Service) -> dict[str, Any]:
    response = service.get("/etvr/osc/status")
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def http_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def test_commands_in_act_through_the_same_machinery_as_the_api(tmp_path: Path) -> None:
    receiver_port = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        with Service(tmp_path / "tracker-config.json") as service:
            config = {
                "osc": {
                    "enable_receiving": True,
                    "receiver_port": receiver_port,
                    "sending_port": sink.getsockname()[1],
                },
                "trackers": TRACKERS,
            }
            assert service.post("/etvr/config", json=config).status_code == 200
            assert service.get("/etvr/start").json() is True
            assert wait_until(lambda: osc_status(service)["receiver"]["listening"], 10.0), osc_status(service)

            # Sync blink toggles on each True, ignores False.
            send_bool(receiver_port, "/avatar/parameters/etvr_sync_blink", True)
            assert wait_until(lambda: service.get("/etvr/config").json()["osc"]["sync_blink"], 3.0)
            send_bool(receiver_port, "/avatar/parameters/etvr_sync_blink", False)
            time.sleep(0.3)
            assert service.get("/etvr/config").json()["osc"]["sync_blink"] is True

            # Recenter reaches the trackers: their stored calibration centre moves to the current gaze.
            def centres() -> list[tuple[float, float]]:
                trackers = service.get("/etvr/config").json()["trackers"]
                return [
                    (t["calibration"]["mapping"]["center_x"], t["calibration"]["mapping"]["center_y"])
                    for t in trackers
                    if t["enabled"]
                ]

            def tracking() -> bool:
                status = service.get("/etvr/trackers/status").json()
                return all(t["latest"] and t["latest"]["confidence"] > 0 for t in status if t["enabled"])

            assert wait_until(tracking, 15.0), "trackers never tracked"
            before = centres()
            send_bool(receiver_port, "/avatar/parameters/etvr_recenter", True)
            assert wait_until(lambda: centres() != before, 5.0), "recenter over OSC did not reach the trackers"

            send_bool(receiver_port, "/avatar/parameters/etvr_recalibrate", True)

            def calibrating() -> bool:
                status = service.get("/etvr/trackers/status").json()
                return any(t["latest"] and t["latest"]["calibration_progress"] >= 0 for t in status)

            assert wait_until(calibrating, 5.0), "recalibrate over OSC started no calibration"
            commands = osc_status(service)["receiver"]["commands"]
            assert commands == {"recenter": 1, "recalibrate": 1, "sync_blink": 1}

            # Addresses are configurable and followed live.
            service.post("/etvr/config", json={"osc": {"endpoints": {"sync_blink": "/etvr/blink"}}})
            time.sleep(0.5)
            send_bool(receiver_port, "/avatar/parameters/etvr_sync_blink", True)  # the old address: no longer
            send_bool(receiver_port, "/etvr/blink", True)
            assert wait_until(lambda: not service.get("/etvr/config").json()["osc"]["sync_blink"], 3.0)

            # Per-target counters reach the status route.
            targets = wait_until(
                lambda: osc_status(service)["targets"][0]["messages_sent"] > 0 and osc_status(service)["targets"], 5.0
            )
            assert targets and targets[0]["mode"] == "v1" and targets[0]["send_errors"] == 0


def test_receiver_port_in_use_is_reported_and_tracking_goes_on(tmp_path: Path) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
    ):
        taken.bind(("127.0.0.1", 0))
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.2)
        with Service(tmp_path / "tracker-config.json") as service:
            config = {
                "osc": {
                    "enable_receiving": True,
                    "receiver_port": taken.getsockname()[1],
                    "sending_port": sink.getsockname()[1],
                    "oscquery": False,
                },
                "trackers": TRACKERS,
            }
            assert service.post("/etvr/config", json=config).status_code == 200
            assert service.get("/etvr/start").json() is True
            receiver = wait_until(
                lambda: osc_status(service)["receiver"]["error"] and osc_status(service)["receiver"], 5
            )
            assert receiver and receiver["listening"] is False and str(taken.getsockname()[1]) in receiver["error"]
            assert "cannot listen on UDP port" in service.log()
            assert service.get("/etvr/status").json() is True

            deadline = time.monotonic() + 15.0
            got = b""
            while time.monotonic() < deadline and b"LeftEyeX" not in got:
                try:
                    got = sink.recv(4096)
                except TimeoutError:
                    continue
            assert b"LeftEyeX" in got, "OSC out stopped because the receiver port was taken"

            # Freed port: switching to another one applies live.
            free = free_port(socket.SOCK_DGRAM)
            service.post("/etvr/config", json={"osc": {"receiver_port": free}})
            assert wait_until(lambda: osc_status(service)["receiver"]["listening"], 3.0)
            assert osc_status(service)["receiver"]["error"] is None


def test_oscquery_http_answers_host_info_and_namespace() -> None:
    addresses = {"/avatar/parameters/etvr_recenter": "recenter", "/avatar/parameters/etvr_recalibrate": "recal"}
    service = OscQueryService(osc_port=45678, addresses=addresses, name="ETVR-Test-Http")
    service.start()
    try:
        info = http_json(service.http_port, "/?HOST_INFO")
        assert info["NAME"] == "ETVR-Test-Http"
        assert (info["OSC_IP"], info["OSC_PORT"], info["OSC_TRANSPORT"]) == ("127.0.0.1", 45678, "UDP")
        assert info["EXTENSIONS"]["ACCESS"] is True
        root = http_json(service.http_port, "/")
        leaf = root["CONTENTS"]["avatar"]["CONTENTS"]["parameters"]["CONTENTS"]["etvr_recenter"]
        assert leaf == {
            "FULL_PATH": "/avatar/parameters/etvr_recenter",
            "ACCESS": 2,
            "TYPE": "T",
            "DESCRIPTION": "recenter",
        }
        node = http_json(service.http_port, "/avatar/parameters")
        assert set(node["CONTENTS"]) == {"etvr_recenter", "etvr_recalibrate"}
        with pytest.raises(urllib.error.HTTPError) as missing:
            http_json(service.http_port, "/avatar/nothing")
        assert missing.value.code == 404
        missing.value.close()
        service.set_addresses({"/etvr/recenter": "moved"})
        assert set(http_json(service.http_port, "/")["CONTENTS"]) == {"etvr"}
    finally:
        service.close()


def multicast_available() -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.sendto(b"probe", ("224.0.0.251", 5353))
    except OSError:
        return False
    return True


def test_mdns_advertisement_resolves_with_zeroconf_and_the_finder_sees_vrchat() -> None:
    if not multicast_available():
        pytest.skip("multicast is unavailable on this machine: mDNS cannot be tested here")
    from zeroconf import Zeroconf

    ours = OscQueryService(osc_port=45679, addresses={"/avatar/parameters/etvr_recenter": "r"}, name="ETVR-Test-Mdns")
    # A stand-in for VRChat's own advertisement, found by the auto-port finder.
    vrchat = OscQueryService(osc_port=45680, addresses={"/avatar/change": "c"}, name="VRChat-Client-ABC123")
    finder = VrchatOscFinder()
    ours.start()
    vrchat.start()
    finder.start()
    zc = Zeroconf()
    try:
        if not ours.advertised:
            pytest.skip(f"mDNS advertisement unavailable here: {ours.error}")
        info = zc.get_service_info(OSCJSON_SERVICE, f"ETVR-Test-Mdns.{OSCJSON_SERVICE}", timeout=5000)
        assert info is not None and info.port == ours.http_port
        assert "127.0.0.1" in info.parsed_addresses()
        udp = zc.get_service_info(OSC_UDP_SERVICE, f"ETVR-Test-Mdns.{OSC_UDP_SERVICE}", timeout=5000)
        assert udp is not None and udp.port == 45679
        found = wait_until(finder.found, 8.0)
        assert found is not None and found.osc_port == 45680 and found.name.startswith("VRChat-Client-ABC123")
    finally:
        zc.close()
        finder.close()
        vrchat.close()
        ours.close()
