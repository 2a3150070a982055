"""Data sets for `python -m benchmarks accuracy`: MEYE (real, labelled), the virtual eye, the ETVR clips."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.camera.base import GrayImage
from app.camera.virtual_eye import PRESETS, EyeGroundTruth, GazeScript, render_eye

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MEYE_DIR = SHARED_DATA / "meye-human-nir"
CLIPS_DIR = SHARED_DATA / "etvr-toolbox-ir-videos"
MEYE_AUDIT = Path(__file__).resolve().parent / "data" / "meye_blink_audit.csv"
CLOSURE_FOLDS = Path(__file__).resolve().parent / "data" / "eye_closure_folds"


@dataclass(frozen=True, slots=True)
class MeyeFrame:
    name: str
    gray: GrayImage
    subject: int
    blink: bool
    centroid: tuple[float, float] | None  # mask centroid; None when the mask is empty
    audited_blink: bool | None = None  # the blink truth after our by-eye audit; None: not audited (see below)

    @property
    def blink_truth(self) -> bool:
        """MEYE's own blink truth: its blink flag, or an empty pupil mask (no pupil drawn)."""
        return self.blink or self.centroid is None

    @property
    def audited_blink_truth(self) -> bool:
        """The blink truth with the frames of benchmarks/data/meye_blink_audit.csv corrected."""
        return self.blink_truth if self.audited_blink is None else self.audited_blink


def closure_fold_model(subject: int) -> bytes | None:
    """The eye-closure classifier trained without MEYE `subject` (tools/train_eye_closure.py --folds), if present."""
    path = CLOSURE_FOLDS / f"sub{subject}.onnx"
    return path.read_bytes() if path.is_file() else None


def load_meye_audit() -> dict[str, bool]:
    """File name -> audited blink flag for the frames whose MEYE blink truth the image clearly contradicts."""
    if not MEYE_AUDIT.is_file():
        return {}
    with MEYE_AUDIT.open() as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return {row["filename"]: row["audited_blink"] == "1" for row in rows}


def load_meye(every: int = 1) -> list[MeyeFrame]:
    """MEYE human frames in (subject, file name) order; `every` keeps one frame in that many."""
    if not MEYE_DIR.is_dir():
        return []
    with (MEYE_DIR / "annotations_human_subset.csv").open() as handle:
        subjects = {row["filename"]: int(row["sub"]) for row in csv.DictReader(handle)}
    with (MEYE_DIR / "pupil_from_masks.csv").open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: (subjects[r["filename"]], r["filename"]))
    audit = load_meye_audit()
    frames = []
    for row in rows[::every]:
        image = cv2.imread(str(MEYE_DIR / "images" / row["filename"]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        gray: GrayImage = np.asarray(image, np.uint8)
        cx, cy = float(row["centroid_x"]), float(row["centroid_y"])
        centroid = (cx, cy) if cx >= 0 and cy >= 0 else None
        name = row["filename"]
        frames.append(MeyeFrame(name, gray, subjects[name], row["blink"] == "1", centroid, audit.get(name)))
    return frames


def synthetic_frames(preset_name: str, count: int, seed: int = 7) -> Iterator[tuple[float, GrayImage, EyeGroundTruth]]:
    """`count` consecutive frames of the scripted virtual eye at the preset's frame rate (fixed seed)."""
    preset = PRESETS[preset_name]
    script = GazeScript(seed)
    rng = np.random.default_rng(seed)
    for index in range(count):
        ts = index / preset.fps
        gray, truth = render_eye(script.state_at(ts), preset, rng)
        yield ts, gray, truth


def source_frames(preset_name: str, count: int, fps: float) -> Iterator[tuple[float, GrayImage]]:
    """`count` frames of the virtual eye's camera source (a replayed loop for the `bench*` presets), read unpaced at
    script times `fps` apart: (script time, frame)."""
    from app.camera.virtual_eye import VirtualEyeSource

    script_time_s = [0.0]
    source = VirtualEyeSource(preset_name, paced=False, clock=lambda: script_time_s[0])
    source.open()
    try:
        for index in range(count):
            script_time_s[0] = index / fps
            frame = source.read(1.0)
            if frame is None:
                raise RuntimeError(f"the virtual eye '{preset_name}' gave no frame")
            yield script_time_s[0], frame.gray
    finally:
        source.close()


def clip_paths() -> list[Path]:
    if not CLIPS_DIR.is_dir():
        return []
    return sorted(p for p in CLIPS_DIR.iterdir() if p.suffix.lower() in (".mp4", ".avi"))


def find_clip(prefix: str) -> Path | None:
    """The first clip whose file name starts with `prefix`; None when ../shared/data has none."""
    return next((path for path in clip_paths() if path.name.startswith(prefix)), None)


def read_clip(path: Path, max_frames: int) -> Iterator[tuple[float, GrayImage]]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    index = 0
    try:
        while index < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            yield index / fps, np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), np.uint8)
            index += 1
    finally:
        capture.release()
