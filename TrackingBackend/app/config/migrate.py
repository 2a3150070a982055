"""Step-by-step migration of config files from older schema versions (pure dict transforms)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from app.config.models import CONFIG_VERSION

JsonDict = dict[str, Any]


class ConfigMigrationError(ValueError):
    """A file whose version this program cannot read."""


def _v4_to_v5(data: JsonDict) -> JsonDict:
    """v5 adds filter, calibration, OSC mode and the dilation address; v4's single switch becomes a mode."""
    osc = data.get("osc")
    if isinstance(osc, dict) and osc.get("vrchat_native_tracking") is True and "mode" not in osc:
        osc["mode"] = "native"
    return data


def _v5_to_v6(data: JsonDict) -> JsonDict:
    """v6 adds OSC targets (`osc.outputs`). The single target of v4/v5 (address, sending_port, mode,
    vrchat_native_tracking) becomes outputs[0] with null fields, which keep reading those top-level
    fields, so the GUI's edits of them still steer it. The switch now decides native, so a v5 'native'
    mode sets it."""
    osc = data.get("osc")
    if isinstance(osc, dict):
        if osc.get("mode") == "native":
            osc["vrchat_native_tracking"] = True
        osc.setdefault("outputs", [{"name": "VRChat"}])
    return data


# MIGRATIONS[n] turns a version-n document into a version-(n+1) one.
MIGRATIONS: dict[int, Callable[[JsonDict], JsonDict]] = {4: _v4_to_v5, 5: _v5_to_v6}
OLDEST_READABLE_VERSION = 4


def migrate(document: JsonDict) -> tuple[JsonDict, int]:
    """Bring a parsed config document to the current version; returns it and the version it had."""
    data = copy.deepcopy(document)
    raw_version = data.get("version", OLDEST_READABLE_VERSION)
    if isinstance(raw_version, bool) or not isinstance(raw_version, int):
        raise ConfigMigrationError(f"version must be an integer, got {raw_version!r}")
    if raw_version > CONFIG_VERSION:
        raise ConfigMigrationError(
            f"the file has version {raw_version}, newer than this program's {CONFIG_VERSION}; "
            "it was written by a newer ETVR Backend"
        )
    if raw_version < OLDEST_READABLE_VERSION:
        raise ConfigMigrationError(
            f"version {raw_version} is older than the oldest readable ({OLDEST_READABLE_VERSION})"
        )
    version = raw_version
    while version < CONFIG_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    data["version"] = CONFIG_VERSION
    return data, raw_version
