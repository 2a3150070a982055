from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config.models import CONFIG_VERSION, EtvrConfig, TrackerConfig, TrackerPosition
from app.config.store import ConfigStore, read_config_file, write_atomically
from app.config.watcher import changed_sections

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_empty_document_validates_to_the_full_default() -> None:
    config = EtvrConfig.model_validate({})
    assert config.version == CONFIG_VERSION
    assert [t.name for t in config.trackers] == ["Left Eye", "Right Eye", "Mouth"]
    assert [t.enabled for t in config.trackers] == [True, True, False]
    assert config.osc.sending_port == 9000 and config.osc.receiver_port == 9001
    assert len({t.uuid for t in config.trackers}) == 3


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"osc": {"sending_port": 70000}}, "osc.sending_port"),
        ({"osc": {"sending_port": "nine"}}, "osc.sending_port"),
        ({"osc": {"endpoints": {"eyes_y": "EyesY"}}}, "osc.endpoints.eyes_y"),
        ({"osc": {"bogus": 1}}, "osc.bogus"),
        ({"affinity_mask": "zz"}, "affinity_mask"),
        ({"trackers": [{"algorithm": {"algorithm_order": []}}]}, "trackers.0.algorithm.algorithm_order"),
        ({"trackers": [{"algorithm": {"algorithm_order": ["BLOB", "BLOB"]}}]}, "trackers.0.algorithm.algorithm_order"),
        ({"trackers": [{"camera": {"capture_source": "concat:a.mp4|b.mp4"}}]}, "trackers.0.camera.capture_source"),
        ({"trackers": [{"camera": {"roi_w": -5}}]}, "trackers.0.camera.roi_w"),
    ],
)
def test_invalid_values_name_the_field(patch: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        EtvrConfig.model_validate(patch)
    locations = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert any(loc.startswith(where) for loc in locations), locations


def test_duplicate_uuid_and_two_enabled_trackers_at_one_position_are_refused() -> None:
    with pytest.raises(ValidationError, match="used more than once"):
        EtvrConfig.model_validate(
            {
                "trackers": [
                    {"uuid": "a", "tracker_position": "LEFT_EYE"},
                    {"uuid": "a", "tracker_position": "RIGHT_EYE"},
                ]
            }
        )
    with pytest.raises(ValidationError, match="both enabled at LEFT_EYE"):
        EtvrConfig.model_validate({"trackers": [{"tracker_position": "LEFT_EYE"}, {"tracker_position": "LEFT_EYE"}]})


def test_tracker_without_position_is_disabled_and_gets_a_uuid() -> None:
    tracker = TrackerConfig.model_validate({"enabled": True})
    assert tracker.tracker_position == TrackerPosition.UNDEFINED
    assert tracker.enabled is False
    assert len(tracker.uuid) == 36


def test_version_4_file_loads_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "tracker-config.json"
    path.write_text((FIXTURES / "tracker-config-v4.json").read_text())
    store = ConfigStore(path)
    config = store.load()
    assert config.version == CONFIG_VERSION
    left = config.trackers[0]
    assert left.uuid == "3d6d4f3c-8d8e-4a6a-9a59-0a1b2c3d4e5f"
    assert left.camera.capture_source == "http://openiristracker.local/"
    assert (left.camera.rotation, left.camera.flip_y_axis, left.camera.roi_w) == (15, True, 120)
    assert [a.value for a in left.algorithm.algorithm_order] == ["HSRAC", "HSF", "BLOB"]
    assert config.trackers[1].uuid  # generated
    assert config.osc.mode == "native"  # from vrchat_native_tracking
    # The migrated file is on disk, and the original is kept beside it.
    assert json.loads(path.read_text())["version"] == CONFIG_VERSION
    backups = list(tmp_path.glob("tracker-config.v4-*.json"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["version"] == 4


def test_unknown_fields_in_a_file_are_dropped_reported_and_the_original_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": 5, "osc": {"sending_port": 9100, "legacy_thing": 1}, "extra_top": True}))
    store = ConfigStore(path)
    config = store.load()
    assert config.osc.sending_port == 9100
    assert store.problems and "legacy_thing" in store.problems[0].message and "extra_top" in store.problems[0].message
    assert store.problems[0].backup_path and "legacy_thing" in Path(store.problems[0].backup_path).read_text()


@pytest.mark.parametrize(
    "content", [b"{not json", b"[]", b'{"version": 99}', b'{"osc": {"sending_port": -1}}', b"\xff\xfe"]
)
def test_corrupt_file_is_backed_up_and_defaults_load(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tracker-config.json"
    path.write_bytes(content)
    store = ConfigStore(path)
    config = store.load()
    assert config.osc.sending_port == 9000 and [t.name for t in config.trackers] == ["Left Eye", "Right Eye", "Mouth"]
    assert store.problems, "the problem must be reported"
    backup = Path(store.problems[0].backup_path or "")
    assert backup.read_bytes() == content, "the broken file must be kept byte for byte"
    assert read_config_file(path).config.osc.sending_port == 9000


def test_atomic_write_never_leaves_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_atomically(path, b'{"version": 5}')
    assert path.read_bytes() == b'{"version": 5}'
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"], "no temp file is left behind"


def test_update_is_deep_merged_validated_and_saved(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "c.json")
    store.load()
    store.update({"osc": {"sending_port": 9555}})
    assert read_config_file(store.path).config.osc.sending_port == 9555
    assert store.config.osc.address == "127.0.0.1"  # untouched sibling kept
    with pytest.raises(ValidationError):
        store.update({"osc": {"sending_port": 0}})
    assert store.config.osc.sending_port == 9555, "a refused update changes nothing"
    assert read_config_file(store.path).config.osc.sending_port == 9555


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_dir_keeps_memory_config_and_reports(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "c.json")
    store.load()
    tmp_path.chmod(0o500)
    try:
        store.update({"debug": True})
        assert store.config.debug is True
        assert store.persist_error and "memory only" in store.persist_error
    finally:
        tmp_path.chmod(0o700)


def test_changed_sections_names_what_changed() -> None:
    old = EtvrConfig()
    doc = old.model_dump(mode="json")
    doc["osc"]["sending_port"] = 9100
    doc["trackers"][0]["camera"]["rotation"] = 90
    new = EtvrConfig.model_validate(doc)
    uuid = old.trackers[0].uuid
    assert changed_sections(old, new) == {"osc", f"tracker:{uuid}:camera"}
    doc["trackers"].pop()
    assert "trackers" in changed_sections(old, EtvrConfig.model_validate(doc))


def test_a_late_read_of_our_own_earlier_write_is_not_adopted_back(tmp_path: Path) -> None:
    """Regression: under 100 concurrent API updates, the main process's file watcher read the file
    between two writes and adopted that older content, undoing the updates made after it."""
    store = ConfigStore(tmp_path / "c.json")
    store.load()
    store.update({"osc": {"sending_port": 9101}})
    stale = read_config_file(store.path).config
    store.update({"osc": {"sending_port": 9102}})
    assert store.adopt(stale) is False
    assert store.config.osc.sending_port == 9102
    hand_edit = EtvrConfig.model_validate({**stale.model_dump(mode="json"), "debug": True})
    assert store.adopt(hand_edit) is True and store.config.debug is True


def test_watcher_reacts_to_writes_only_not_to_its_own_reads(tmp_path: Path) -> None:
    """Regression: reading the file raised inotify open/close events, and every process's watcher
    answered each by reading it again, about 17 times a second forever (2 % CPU while idle)."""
    import threading
    import time

    from app.config.watcher import ConfigWatcher

    store = ConfigStore(tmp_path / "c.json")
    store.load()
    changes: list[set[str]] = []
    reads = 0
    changed = threading.Event()

    class CountingWatcher(ConfigWatcher):
        def check_now(self) -> None:
            nonlocal reads
            reads += 1
            super().check_now()

    def on_change(_: EtvrConfig, sections: set[str]) -> None:
        changes.append(sections)
        changed.set()

    watcher = CountingWatcher(store.path, store.config, on_change)
    watcher.start()
    try:
        store.update({"debug": True})
        assert changed.wait(3.0) and changes == [{"debug"}]
        time.sleep(0.5)
        settled = reads
        time.sleep(1.0)
        assert reads == settled, f"the watcher kept re-reading the file: {reads - settled} reads in 1 s"
    finally:
        watcher.stop()
