"""`main.py analyze <video | folder of images> --csv OUT`: the tracker's pipeline over every frame, offline.

One CSV row per frame, no server. Pixel coordinates are in the input image; fields are empty where no
pupil was found. Images in a folder are taken in name order; a video's frames are timed by its frame rate.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from app.camera.base import GrayImage
from app.config.models import TrackerConfig
from app.tracking.pipeline import EyePipeline

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm"})
FOLDER_FPS = 30.0
COLUMNS = [
    "frame",
    "source",
    "pupil_x",
    "pupil_y",
    "ellipse_w",
    "ellipse_h",
    "ellipse_angle",
    "confidence",
    "openness",
    "blink",
    "dilation",
    "ms",
]


def _to_gray(image: npt.NDArray[np.uint8]) -> GrayImage:
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    result: GrayImage = np.ascontiguousarray(gray, np.uint8)
    return result


def iter_frames(path: Path) -> Iterator[tuple[str, float, GrayImage]]:
    """(source name, timestamp s, gray frame) for a folder of images (name order) or a video file."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for index, file in enumerate(files):
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if image is not None:
                yield file.name, index / FOLDER_FPS, _to_gray(np.asarray(image, np.uint8))
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or FOLDER_FPS
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield path.name, index / fps, _to_gray(np.asarray(image, np.uint8))
            index += 1
    finally:
        capture.release()


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def analyze(source: Path, out_csv: Path, config: TrackerConfig) -> int:
    """Run the pipeline over every frame of `source`; returns the number of rows written."""
    pipeline = EyePipeline(config)
    rows = 0
    with out_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for index, (name, ts, gray) in enumerate(iter_frames(source)):
            start = time.perf_counter()
            result = pipeline.process(gray, ts)
            elapsed_ms = (time.perf_counter() - start) * 1e3
            pupil = result.pupil
            found = pupil.confidence >= config.algorithm.confidence_threshold
            geometry = ["", "", "", "", ""]
            if found:
                geometry = [_number(v) for v in (pupil.x, pupil.y, pupil.ellipse_w, pupil.ellipse_h)]
                geometry.append(_number(pupil.angle_deg, 1))
            lids = [_number(result.openness), str(int(result.blink)), _number(result.dilation)]
            writer.writerow([str(index), name, *geometry, _number(pupil.confidence), *lids, _number(elapsed_ms, 2)])
            rows += 1
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="main.py analyze", description=__doc__)
    parser.add_argument("source", type=Path, help="a video file or a folder of images")
    parser.add_argument("--csv", type=Path, required=True, help="output CSV file")
    parser.add_argument("--tracker-config", type=Path, help="JSON tracker config (defaults when omitted)")
    args = parser.parse_args(argv)
    config = TrackerConfig()
    if args.tracker_config is not None:
        config = TrackerConfig.model_validate_json(args.tracker_config.read_text())
    if not args.source.exists():
        print(f"analyze: {args.source} does not exist", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    try:
        rows = analyze(args.source, args.csv, config)
    except FileNotFoundError as exc:
        print(f"analyze: {exc}", file=sys.stderr)
        return 2
    print(f"analyze: {rows} frames -> {args.csv}")
    return 0 if rows else 1
