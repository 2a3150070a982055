"""Every route of CONTRACTS §1 against the real service process, with its error cases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service import Service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    config_path = tmp_path_factory.mktemp("routes") / "tracker-config.json"
    with Service(config_path) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_config(service: Service) -> None:
    assert service.get("/etvr/stop").json() is True
    assert service.get("/etvr/config/reset").status_code == 200


def on_disk(service: Service) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(service.config_path.read_text())
    return loaded


def test_config_get_post_and_file_agree(service: Service) -> None:
    config = service.get("/etvr/config").json()
    assert config["version"] == 6 and len(config["trackers"]) == 3
    updated = service.post("/etvr/config", json={"osc": {"sending_port": 9123, "mirror_eyes": True}})
    assert updated.status_code == 200
    assert updated.json()["osc"]["sending_port"] == 9123
    assert updated.json()["osc"]["address"] == "127.0.0.1"
    assert on_disk(service)["osc"]["sending_port"] == 9123  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"osc": {"sending_port": 0}}, "sending_port"),
        ({"osc": {"typo_field": 1}}, "typo_field"),
        ({"trackers": [{"camera": {"capture_source": "file:///etc/passwd"}}]}, "Accepted forms"),
        ([1, 2], "dict"),
    ],
)
def test_bad_config_updates_get_422_naming_the_problem(service: Service, body: object, fragment: str) -> None:
    before = service.config_path.read_text()
    response = service.post("/etvr/config", json=body)
    assert response.status_code == 422
    assert fragment in response.text
    assert service.config_path.read_text() == before, "a refused update must not touch the file"


def test_invalid_json_and_huge_bodies_are_refused(service: Service) -> None:
    response = service.post("/etvr/config", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 422
    huge = service.post(
        "/etvr/config", content=b"{" + b" " * 2_000_000 + b"}", headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and "larger than" in huge.text


def test_save_load_and_gui_aliases(service: Service) -> None:
    for path in ("/etvr/config/save", "/etvr/save"):
        assert service.get(path).status_code == 200
    doc = on_disk(service)
    doc["debug"] = True
    service.config_path.write_text(json.dumps(doc))
    for path in ("/etvr/config/load", "/etvr/load"):
        loaded = service.get(path)
        assert loaded.status_code == 200 and loaded.json()["debug"] is True


def test_tracker_crud(service: Service) -> None:
    trackers = service.get("/etvr/config/trackers").json()
    assert [t["name"] for t in trackers] == ["Left Eye", "Right Eye", "Mouth"]
    left = trackers[0]
    assert service.get("/etvr/config/tracker", params={"uuid": left["uuid"]}).json()["name"] == "Left Eye"
    assert service.get("/etvr/config/tracker", params={"uuid": "missing"}).status_code == 404

    created = service.client.put("/etvr/config/tracker", json={"name": "Spare"})
    assert created.status_code == 200
    spare = created.json()
    assert spare["uuid"] and spare["enabled"] is False and spare["tracker_position"] == "UNDEFINED"
    dup = service.client.put("/etvr/config/tracker", json={"name": "Again", "uuid": spare["uuid"]})
    assert dup.status_code == 409

    changed = service.post(
        "/etvr/config/tracker", params={"uuid": left["uuid"]}, json={"camera": {"rotation": 45, "roi_w": 100}}
    )
    assert changed.status_code == 200
    assert changed.json()["camera"]["rotation"] == 45 and changed.json()["camera"]["roi_w"] == 100
    assert changed.json()["camera"]["capture_source"] == left["camera"]["capture_source"]
    assert service.post("/etvr/config/tracker", params={"uuid": "missing"}, json={}).status_code == 404
    bad = service.post("/etvr/config/tracker", params={"uuid": left["uuid"]}, json={"camera": {"rotation": 999}})
    assert bad.status_code == 422 and "rotation" in bad.text

    reset = service.get("/etvr/config/tracker/reset", params={"uuid": left["uuid"]}).json()
    assert reset["camera"]["rotation"] == 0 and reset["uuid"] == left["uuid"] and reset["name"] == "Left Eye"

    assert service.client.delete("/etvr/config/tracker", params={"uuid": spare["uuid"]}).json() is True
    assert service.client.delete("/etvr/config/tracker", params={"uuid": spare["uuid"]}).status_code == 404
    assert len(service.get("/etvr/config/trackers").json()) == 3


def test_gui_startup_upsert_by_position(service: Service) -> None:
    body = {
        "devices": [
            {"position": "left_eye", "capture_source": "http://openiristracker.local/", "rotation_angle": 90},
            {"position": "right_eye", "capture_source": "COM5", "flip_x_axis": True, "future_field": 1},
            {"position": "mouth", "enabled": False},
        ]
    }
    response = service.post("/etvr/config/tracker", json=body)
    assert response.status_code == 200
    trackers = {t["tracker_position"]: t for t in response.json()["trackers"]}
    assert trackers["LEFT_EYE"]["camera"]["capture_source"] == "http://openiristracker.local/"
    assert trackers["LEFT_EYE"]["camera"]["rotation"] == 90
    assert trackers["RIGHT_EYE"]["camera"]["flip_x_axis"] is True
    assert len(response.json()["trackers"]) == 3, "an upsert updates the tracker at each position"
    bad = service.post("/etvr/config/tracker", json={"devices": [{"position": "nose"}]})
    assert bad.status_code == 422
    assert service.post("/etvr/config/tracker", json={"name": "x"}).status_code == 422


def test_start_stop_status_and_tracker_status(service: Service) -> None:
    assert service.get("/etvr/status").json() is False
    service.post(
        "/etvr/config",
        json={
            "trackers": [
                {"tracker_position": "LEFT_EYE", "name": "L", "camera": {"capture_source": ""}},
            ]
        },
    )
    assert service.get("/etvr/start").json() is True
    assert service.get("/etvr/status").json() is True
    statuses = service.get("/etvr/trackers/status").json()
    assert len(statuses) == 1 and statuses[0]["running"] is True
    assert set(statuses[0]["processes"]) == {"camera", "tracker", "osc"}
    assert all(isinstance(p["pid"], int) for p in statuses[0]["processes"].values())
    assert service.get("/etvr/restart").json() is True
    assert service.get("/etvr/stop").json() is True
    assert service.get("/etvr/status").json() is False
    assert service.post("/etvr/trackers/calibrate").status_code == 409
    assert service.post("/etvr/trackers/missing/recenter").status_code == 404


def test_health_reports_the_config_file(service: Service) -> None:
    health = service.get("/etvr/health").json()
    assert health["config_path"] == str(service.config_path.resolve())
    assert health["persisted"] is True


def test_openapi_documents_the_routes(service: Service) -> None:
    paths = service.get("/openapi.json").json()["paths"]
    for path in (
        "/etvr/start",
        "/etvr/config",
        "/etvr/config/tracker",
        "/etvr/trackers/status",
        "/etvr/shutdown",
        "/etvr/save",
        "/etvr/load",
    ):
        assert path in paths
    assert service.get("/docs").status_code == 200


def test_shutdown_exits_the_process(tmp_path: Path) -> None:
    service = Service(tmp_path / "c.json").start()
    try:
        assert service.get("/etvr/shutdown").json() is True
        assert service.process is not None
        assert service.process.wait(10) == 0
    finally:
        service.stop()


def test_token_is_required_on_every_route_when_set(tmp_path: Path) -> None:
    with Service(
        tmp_path / "c.json", args=["--token", "s3cret-token"], ready_path="/etvr/status?token=s3cret-token"
    ) as svc:
        svc.client.cookies.clear()  # the readiness check's ?token= set the cookie
        assert svc.get("/etvr/status").status_code == 401
        assert svc.get("/etvr/config", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert svc.get("/etvr/config", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert svc.get("/etvr/status", params={"token": "s3cret-token"}).json() is False
        assert "s3cret-token" not in svc.log(), "the token must never be logged"


def test_listening_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.service import MAIN

    result = subprocess.run(
        [sys.executable, str(MAIN), "--host", "0.0.0.0", "--config", str(tmp_path / "c.json")],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "without a token" in result.stderr


def test_cors_allows_the_desktop_app_and_local_pages_only(service: Service) -> None:
    for origin, allowed in (
        ("tauri://localhost", True),
        ("http://localhost:1420", True),
        ("http://127.0.0.1:8000", True),
        ("https://evil.example", False),
    ):
        response = service.client.options(
            "/etvr/config", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert (response.headers.get("access-control-allow-origin") == origin) is allowed, origin


def test_a_token_in_the_url_sets_a_cookie_that_docs_can_use(tmp_path: Path) -> None:
    with Service(tmp_path / "c.json", args=["--token", "tok-123"], ready_path="/etvr/status?token=tok-123") as svc:
        svc.client.cookies.clear()
        assert svc.get("/openapi.json").status_code == 401
        first = svc.get("/docs", params={"token": "tok-123"})
        assert first.status_code == 200 and "etvr_token=tok-123" in first.headers["set-cookie"]
        assert "HttpOnly" in first.headers["set-cookie"]
        assert svc.get("/openapi.json").status_code == 200, "the cookie from ?token= is accepted"
        svc.client.cookies.clear()
        svc.client.cookies.set("etvr_token", "wrong")
        assert svc.get("/openapi.json").status_code == 401
