"""Train the eye-closure classifier (a tiny CNN) on MEYE's human near-IR eyes and export it as ONNX.

Developer tool, not run by the service or the tests. It needs PyTorch, which is not a project dependency:

    .venv/bin/pip install torch==2.13.0 onnx      # CPU build; this machine has the wheel on disk
    PYTHONPATH=TrackingBackend .venv/bin/python tools/train_eye_closure.py [--folds] [--epochs N]

What it learns: whether the eye is closed or closing, from the whole frame squeezed to INPUT_PX x INPUT_PX and
normalised to zero mean and unit contrast. Two sources:
- MEYE (real near-IR eyes, 10 people): its blink flag (``1 = eyelid closed/closing``) or an empty pupil mask,
  the benchmark's blink truth (benchmarks/_accuracy_sets.py);
- the virtual eye (app.camera.virtual_eye) in random states of its presets, which look like VR eye cameras
  (off-axis, glints, lashes, blur): openness under SYNTHETIC_CLOSED is closed or closing, over SYNTHETIC_OPEN
  open, and the frames between are left out. Without them a model trained on MEYE alone read the virtual eye's
  closed lids as open, and flagged a third of some real VR clips.
Augmentation (rotation, zoom, aspect, shift, gamma, mirror, noise, blur) widens the framing and look further.

Writes:
- TrackingBackend/app/tracking/models/eye_closure.onnx: trained on every MEYE subject (what the service runs);
- with --folds, benchmarks/data/eye_closure_folds/sub<N>.onnx: one model per subject trained without that
  subject, so `bench accuracy` scores every MEYE subject with a model that never saw it.
Deterministic for a given torch version (seeded, one thread).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "TrackingBackend"), str(ROOT)]

from benchmarks._accuracy_sets import MEYE_DIR  # noqa: E402
from benchmarks._accuracy_sets import load_meye as benchmark_frames  # noqa: E402

from app.tracking.eye_closure import INPUT_PX  # noqa: E402  (after the path is set)

PRODUCT_MODEL = ROOT / "TrackingBackend" / "app" / "tracking" / "models" / "eye_closure.onnx"
FOLDS_DIR = ROOT / "benchmarks" / "data" / "eye_closure_folds"
SOURCE_PX = 2 * INPUT_PX  # augmentation samples at twice the input size, then area-averages down
WIDTH = 8  # channels of the first layer
BATCH = 64
LEARNING_RATE = 3e-3
SEED = 7
SYNTHETIC_FRAMES = 8000
SYNTHETIC_PRESETS = ("default", "easy", "hard", "small")
SYNTHETIC_SEED = 1234  # not a seed the benchmark scores (7 and 11)
SYNTHETIC_CLOSED = 0.4
SYNTHETIC_OPEN = 0.6


class EyeClosureNet(nn.Sequential):
    def __init__(self, width: int = WIDTH) -> None:
        w = width
        super().__init__(
            nn.Conv2d(1, w, 3, stride=2, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, 1),
        )


def load_meye() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (SOURCE_PX square, uint8), blink truth (0/1), subject, in (subject, file name) order: the frames
    and the blink truth the accuracy benchmark scores (benchmarks/_accuracy_sets.py)."""
    frames = benchmark_frames()
    images = [cv2.resize(f.gray, (SOURCE_PX, SOURCE_PX), interpolation=cv2.INTER_AREA) for f in frames]
    return np.array(images), np.array([int(f.blink_truth) for f in frames]), np.array([f.subject for f in frames])


def render_synthetic() -> tuple[np.ndarray, np.ndarray]:
    """Virtual-eye frames in random states (SOURCE_PX square) and their closed-or-closing truth."""
    from app.camera.virtual_eye import PRESETS, EyeState, render_eye

    rng = np.random.default_rng(SYNTHETIC_SEED)
    images, truth = [], []
    for index in range(SYNTHETIC_FRAMES):
        # Half the frames anywhere from closed to open, half open; some squeezed, a few widened.
        openness = rng.uniform(0.0, 1.0) if rng.random() < 0.5 else rng.uniform(0.8, 1.0)
        squeeze = rng.uniform(0.0, 1.0) if rng.random() < 0.2 else 0.0
        widen = rng.uniform(0.0, 1.0) if squeeze == 0.0 and rng.random() < 0.1 else 0.0
        state = EyeState(
            gaze_x=rng.uniform(-1, 1),
            gaze_y=rng.uniform(-1, 1),
            openness=openness,
            dilation=rng.uniform(0, 1),
            widen=widen,
            squeeze=squeeze,
        )
        gray, _ = render_eye(state, PRESETS[SYNTHETIC_PRESETS[index % len(SYNTHETIC_PRESETS)]], rng)
        if SYNTHETIC_CLOSED <= openness <= SYNTHETIC_OPEN:
            continue
        images.append(cv2.resize(gray, (SOURCE_PX, SOURCE_PX), interpolation=cv2.INTER_AREA))
        truth.append(int(openness < SYNTHETIC_CLOSED))
    return np.array(images), np.array(truth)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit contrast per image: what `app.tracking.eye_closure` does before the network."""
    mean = batch.mean((2, 3), keepdim=True)
    std = batch.std((2, 3), keepdim=True, unbiased=False)
    return (batch - mean) / (std + 1.0 / 255.0)


def to_input(batch: torch.Tensor) -> torch.Tensor:
    return nn.functional.avg_pool2d(batch, SOURCE_PX // INPUT_PX)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-0.35, 0.35)
    scale = torch.exp(uniform(-0.3, 0.25))
    aspect = torch.exp(uniform(-0.5, 0.5))  # VR eye crops are often wider than tall; the frame is squeezed square
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * scale * aspect, -sin * scale, uniform(-0.2, 0.2)], 1),
            torch.stack([sin * scale * aspect, cos * scale / aspect, uniform(-0.2, 0.2)], 1),
        ],
        1,
    )
    grid = nn.functional.affine_grid(theta, [n, 1, SOURCE_PX, SOURCE_PX], align_corners=False)
    out = nn.functional.grid_sample(batch, grid, padding_mode="border", align_corners=False)
    gamma = torch.exp(0.35 * torch.randn(n, 1, 1, 1, generator=generator))
    out = out.clamp(1e-3, 1.0) ** gamma
    mirrored = torch.rand(n, generator=generator) < 0.5
    out[mirrored] = out[mirrored].flip(3)
    blurred = torch.rand(n, generator=generator) < 0.3
    if blurred.any():
        kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
        kernel2d = (kernel[:, None] * kernel[None, :]).view(1, 1, 5, 5)
        out[blurred] = nn.functional.conv2d(out[blurred], kernel2d, padding=2)
    noise = 0.03 * torch.rand(n, 1, 1, 1, generator=generator)
    return to_input(out + noise * torch.randn(out.shape, generator=generator))


def train(images: torch.Tensor, truth: torch.Tensor, epochs: int) -> EyeClosureNet:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    model = EyeClosureNet()
    optimiser = torch.optim.AdamW(model.parameters(), LEARNING_RATE, weight_decay=1e-3)
    steps = epochs * ((len(images) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), BATCH):
            index = order[start : start + BATCH]
            logits = model(normalise(augment(images[index], generator))).squeeze(1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, truth[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


def export(model: EyeClosureNet, path: Path) -> None:
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 1, INPUT_PX, INPUT_PX)
    torch.onnx.export(model, (dummy,), buffer, dynamo=False, input_names=["eye"], output_names=["logit"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", action="store_true", help="also the leave-one-subject-out models")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="train only these subjects' folds (for experiments)")
    args = parser.parse_args()
    if not MEYE_DIR.is_dir():
        print(f"no MEYE data at {MEYE_DIR}")
        return 1
    torch.set_num_threads(1)
    meye, meye_truth, subjects = load_meye()
    synthetic, synthetic_truth = render_synthetic()
    raw = np.concatenate([meye, synthetic])
    images = torch.tensor(raw, dtype=torch.float32).unsqueeze(1) / 255.0
    truth = torch.tensor(np.concatenate([meye_truth, synthetic_truth]), dtype=torch.float32)
    owner = np.concatenate([subjects, np.full(len(synthetic), -1)])  # -1: the virtual eye, in every fold
    started = time.monotonic()
    folds = [int(s) for s in args.only] if args.only else sorted(set(subjects.tolist())) if args.folds else []
    for subject in folds:
        keep = torch.tensor(owner != subject)
        export(train(images[keep], truth[keep], args.epochs), FOLDS_DIR / f"sub{subject}.onnx")
        print(f"fold without subject {subject}: done at {time.monotonic() - started:.0f} s", flush=True)
    if args.only:
        return 0
    export(train(images, truth, args.epochs), PRODUCT_MODEL)
    print(
        f"{PRODUCT_MODEL} written: {len(meye)} MEYE frames ({int(meye_truth.sum())} closed or closing), "
        f"{len(synthetic)} virtual-eye frames ({int(synthetic_truth.sum())})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
