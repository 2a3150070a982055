"""Loading, validating and atomically saving the config file; the main process's single owner of it.

Rules: validate in memory before anything touches the disk; write a temp file in the same folder, fsync,
`os.replace`; a file that fails to load is moved aside to a timestamped backup and reported, never
silently lost; if the disk refuses a write, keep serving the in-memory config and say it is not saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.config.migrate import ConfigMigrationError, migrate
from app.config.models import EtvrConfig

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
WRITE_HISTORY = 256


class ConfigFileError(ValueError):
    """The file exists but cannot be used as a config (unreadable JSON, wrong schema, future version)."""


@dataclass(frozen=True)
class ParsedConfig:
    config: EtvrConfig
    source_version: int
    # Top-level-to-leaf paths of fields the file had but this schema does not know (dropped, reported).
    unknown_fields: tuple[str, ...] = ()


def format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _drop_path(document: Any, loc: tuple[int | str, ...]) -> None:
    target = document
    for key in loc[:-1]:
        target = target[key]
    if isinstance(target, dict):
        target.pop(loc[-1], None)


def parse_config_document(document: Any) -> ParsedConfig:
    """Validate a parsed JSON document (any version we can migrate), dropping unknown fields it has."""
    if not isinstance(document, dict):
        raise ConfigFileError(f"the top level must be a JSON object, got {type(document).__name__}")
    try:
        data, source_version = migrate(document)
    except ConfigMigrationError as exc:
        raise ConfigFileError(str(exc)) from exc
    unknown: list[str] = []
    # Files from other versions may carry fields we do not know: drop them (the caller reports them and
    # keeps the original file), but any other error rejects the file.
    for _ in range(64):
        try:
            return ParsedConfig(EtvrConfig.model_validate(data), source_version, tuple(unknown))
        except ValidationError as exc:
            errors = exc.errors()
            if not all(err["type"] == "extra_forbidden" for err in errors):
                raise ConfigFileError(format_validation_error(exc)) from exc
            for err in errors:
                unknown.append(".".join(str(p) for p in err["loc"]))
                _drop_path(data, tuple(err["loc"]))
    raise ConfigFileError("too many unknown fields")


def read_config_file(path: Path) -> ParsedConfig:
    """Read and validate a config file without changing it. Raises FileNotFoundError or ConfigFileError."""
    size = path.stat().st_size
    if size > MAX_CONFIG_FILE_BYTES:
        raise ConfigFileError(f"the file is {size} bytes, more than {MAX_CONFIG_FILE_BYTES}")
    raw = path.read_bytes()
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigFileError(f"not valid JSON: {exc}") from exc
    return parse_config_document(document)


def serialize_config(config: EtvrConfig) -> bytes:
    return (json.dumps(config.model_dump(mode="json"), indent=2) + "\n").encode("utf-8")


def write_atomically(path: Path, payload: bytes) -> None:
    """Write `payload` so that `path` always holds either the old or the new complete content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    if os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def deep_merge(base: JsonDict, patch: JsonDict) -> JsonDict:
    """Objects merge key by key; any other value (lists included) replaces what was there."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class ConfigProblem:
    message: str
    backup_path: str | None = None
    at: float = field(default_factory=time.time)


class ConfigStore:
    """The main process's config: in memory, validated, saved atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._config = EtvrConfig()
        self.problems: list[ConfigProblem] = []
        self.persist_error: str | None = None
        self.revision = 0
        self._known_bytes: bytes | None = None  # what this store last wrote or read, to spot outside edits
        self._written: deque[bytes] = deque(maxlen=WRITE_HISTORY)  # digests of recent writes

    @property
    def config(self) -> EtvrConfig:
        return self._config

    def _backup(self, reason: str) -> str | None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = self.path.with_name(f"{self.path.stem}.{reason}-{stamp}-{time.time_ns() % 1_000_000:06d}.json")
        try:
            if reason == "broken":
                os.replace(self.path, backup)
            else:
                backup.write_bytes(self.path.read_bytes())
        except OSError as exc:
            logger.error("could not back up config file %s: %s", self.path, exc)
            return None
        return str(backup)

    def load(self) -> EtvrConfig:
        """Load the file (creating it with defaults when missing); a bad file is backed up, never lost."""
        with self.lock:
            try:
                parsed = read_config_file(self.path)
            except FileNotFoundError:
                logger.info("no config file at %s: writing defaults", self.path)
                self._set(EtvrConfig())
                return self._config
            except (ConfigFileError, OSError) as exc:
                backup = self._backup("broken")
                message = f"config file {self.path} could not be loaded ({exc}); moved to {backup}; using defaults"
                logger.error("%s", message)
                self.problems.append(ConfigProblem(message, backup))
                self._set(EtvrConfig())
                return self._config
            if parsed.unknown_fields or parsed.source_version != parsed.config.version:
                backup = self._backup(f"v{parsed.source_version}")
                if parsed.unknown_fields:
                    message = (
                        f"config file {self.path} had fields this version does not know, which were dropped: "
                        f"{', '.join(parsed.unknown_fields)} (original kept at {backup})"
                    )
                    logger.warning("%s", message)
                    self.problems.append(ConfigProblem(message, backup))
                else:
                    logger.info("migrated config from version %s (original kept at %s)", parsed.source_version, backup)
            self._known_bytes = None
            self._set(parsed.config)
            return self._config

    def adopt(self, config: EtvrConfig) -> bool:
        """Take a config that was already validated from the file (a hand edit); True if it differs.

        The watcher may read the file late, after further API writes: content this store wrote itself
        is never adopted back, or a stale read would undo the updates made since."""
        with self.lock:
            if config == self._config or hashlib.sha256(serialize_config(config)).digest() in self._written:
                return False
            self._config = config
            self.revision += 1
            self._known_bytes = serialize_config(config)
            return True

    def _keep_unknown_file_content(self) -> None:
        """Before overwriting, back up file content we did not write (a hand edit that did not validate)."""
        try:
            on_disk = self.path.read_bytes()
        except OSError:
            return
        if self._known_bytes is not None and on_disk != self._known_bytes:
            try:
                parse_config_document(json.loads(on_disk))
            except (ValueError, ConfigFileError):
                backup = self._backup("overwritten")
                message = f"config file {self.path} held an invalid edit; kept it at {backup} before saving"
                logger.warning("%s", message)
                self.problems.append(ConfigProblem(message, backup))

    def _set(self, config: EtvrConfig) -> None:
        """Adopt a validated config in memory, then persist it (a refused write keeps it in memory)."""
        self._config = config
        self.revision += 1
        payload = serialize_config(config)
        try:
            self._keep_unknown_file_content()
            write_atomically(self.path, payload)
            self._known_bytes = payload
            self._written.append(hashlib.sha256(payload).digest())
        except OSError as exc:
            self.persist_error = f"could not save {self.path}: {exc.strerror or exc}; changes live in memory only"
            logger.error("%s", self.persist_error)
        else:
            if self.persist_error:
                logger.info("config saved again to %s", self.path)
            self.persist_error = None

    def replace(self, config: EtvrConfig) -> EtvrConfig:
        with self.lock:
            # Round-trip through validation so that model-level rules see the whole new config.
            self._set(EtvrConfig.model_validate(config.model_dump(mode="json")))
            return self._config

    def update(self, patch: JsonDict) -> EtvrConfig:
        """Deep-merge a partial document and validate the result as a whole (ValidationError if bad)."""
        with self.lock:
            merged = deep_merge(self._config.model_dump(mode="json"), patch)
            self._set(EtvrConfig.model_validate(merged))
            return self._config

    def save(self) -> EtvrConfig:
        with self.lock:
            self._set(self._config)
            return self._config

    def reset(self) -> EtvrConfig:
        with self.lock:
            self._set(EtvrConfig())
            return self._config
