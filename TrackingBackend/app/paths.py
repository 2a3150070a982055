"""Where the service keeps its files: per-OS user dirs (platformdirs), overridable for tests and demos."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "ETVR"
APP_AUTHOR = "EyeTrackVR"
CONFIG_FILE_NAME = "tracker-config.json"
DEMO_CONFIG_FILE_NAME = "demo-config.json"


def assets_dir() -> Path:
    """The dashboard's static files: `assets/` beside the `app` package, or in a PyInstaller bundle's
    unpack dir (`sys._MEIPASS`, where the spec must put them as `assets`)."""
    package_side = Path(__file__).resolve().parent.parent / "assets"
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None and (Path(bundle) / "assets").is_dir():
        return Path(bundle) / "assets"
    return package_side


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR))


def data_dir() -> Path:
    override = os.environ.get("ETVR_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def log_dir() -> Path:
    override = os.environ.get("ETVR_LOG_DIR")
    return Path(override) if override else Path(platformdirs.user_log_dir(APP_NAME, APP_AUTHOR))


def default_config_path(demo: bool = False) -> Path:
    """`ETVR_CONFIG` wins; else the user config dir (a separate file for the demo)."""
    override = os.environ.get("ETVR_CONFIG")
    if override:
        return Path(override)
    return config_dir() / (DEMO_CONFIG_FILE_NAME if demo else CONFIG_FILE_NAME)
