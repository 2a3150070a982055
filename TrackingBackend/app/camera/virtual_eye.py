"""The built-in virtual eye: a near-infrared eye renderer with exact ground truth, and a camera source on it.

Geometry. The eyeball is a sphere seen orthographically by a camera facing the eye (optionally off-axis).
The iris and the pupil are concentric circles in one plane on that sphere, so each projects to an exact
ellipse; the pupil travels about `gaze_travel_frac` of the frame width/height at gaze ±1. The camera sees
the eye mirrored: gaze_x = +1 (the user looks to their right) moves the pupil to the image's LEFT, and
gaze_y = +1 (up) moves it UP (smaller y), matching the default `GazeMappingConfig`.

Coordinates are OpenCV's, the convention of `cv2.fitEllipse`, `cv2.moments` and the drawing functions:
pixel (row i, column j) has its centre at (x=j, y=i) and covers [j-0.5, j+0.5) x [i-0.5, i+0.5). The pupil
rests at (W/2, H/2) (plus the preset's offset), so x / W is 0.5 at gaze 0. Truth axes follow
`cv2.fitEllipse`: `pupil_w` is the full minor axis, lying along `pupil_angle_deg` (degrees in [0, 180),
from +x towards +y), `pupil_h` the full major axis.

Openness. The lids are two curves between the eye corners that close linearly towards one closure line
(the upper lid travels about three quarters of the way). At the lids' centre column the gap between them
is exactly `openness * open_gap` (reported as `EyeGroundTruth.lid_gap_px`), with
`open_gap = iris_radius * (RELAXED_GAP - OCCLUSION_DROP * lid_occlusion + WIDEN_RAISE * widen
- (SQUEEZE_UPPER + SQUEEZE_LOWER) * squeeze)`. So 1 is the relaxed open eye, 0 closed, and the gap at every
column grows monotonically with openness. Widen raises the upper lid (more sclera above the iris);
squeeze brings both lids towards the middle while the pupil stays visible. Both lids also follow vertical
gaze by the same amount, so the gap does not depend on gaze. Lashes and glints are not counted as
occluders in `pupil_visible_fraction`; the lids' margins are drawn on the lid side of the opening.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from app.camera.base import CapturedFrame, GrayImage, SourceCounters, SourceError

FloatImage = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]

# Grey levels before contrast and vignetting (near-IR: bright skin and sclera, dark pupil).
SKIN_LEVEL = 170.0
SCLERA_LEVEL = 184.0
CANTHUS_LEVEL = 128.0
IRIS_LEVEL = 112.0
PUPIL_LEVEL = 26.0
LASH_LEVEL = 40.0
LOWER_LASH_LEVEL = 105.0
LID_MARGIN_LEVEL = 78.0
GLINT_LEVEL = 1200.0  # far above white so the blurred core still saturates

IRIS_TO_EYEBALL = 0.5  # iris radius / eyeball radius (about 6 mm / 12 mm)
PUPIL_MIN_TO_IRIS = 0.25  # pupil radius at dilation 0, as a fraction of the iris radius
PUPIL_RANGE_TO_IRIS = 0.35  # added at dilation 1
CORNEA_CENTRE_TO_PUPIL = 0.5  # glints move about half as far as the pupil

# Lid heights relative to the lids' centre, in iris radii (image y grows downwards).
UPPER_LID_RELAXED = -0.80
LOWER_LID_RELAXED = 0.95
LID_CORNER_HEIGHT = 0.10
LID_CLOSURE_HEIGHT = 0.55  # where the lids meet when closed: the upper lid travels most of the way
LID_HALF_WIDTH_TO_EYEBALL = 1.22
LID_GAZE_FOLLOW = 0.6  # lids move with the pupil's vertical offset by this fraction
WIDEN_RAISE = 0.45  # upper lid raise at widen = 1, iris radii
SQUEEZE_UPPER = 0.35  # upper lid drop at squeeze = 1, iris radii
SQUEEZE_LOWER = 0.30  # lower lid rise at squeeze = 1, iris radii
OCCLUSION_DROP = 0.45  # upper lid drop at lid_occlusion = 1, iris radii
RELAXED_GAP = LOWER_LID_RELAXED - UPPER_LID_RELAXED
BLINK_OPENNESS = 0.2

LID_SHADOW_DEPTH = 0.28  # darkening of the eyeball just under the upper lid
LID_SHADOW_WIDTH_TO_IRIS = 0.22
SUBPIXEL_SHIFT = 8  # fractional bits for cv2 drawing
SUBPIXEL_SCALE = float(1 << SUBPIXEL_SHIFT)
LID_SAMPLES = 41


@dataclass(frozen=True, slots=True)
class EyeState:
    """What the eye does at an instant."""

    gaze_x: float  # [-1, 1], +x = the user looks to their right
    gaze_y: float  # [-1, 1], +y = up
    openness: float  # [0, 1], 1 = relaxed open, 0 = closed (see the module docstring)
    dilation: float  # [0, 1] pupil size within the user's range
    widen: float = 0.0  # [0, 1] lids opened past the relaxed baseline (upper lid raised)
    squeeze: float = 0.0  # [0, 1] lids narrowed while the eye stays open (pupil still visible)


@dataclass(frozen=True, slots=True)
class EyeGroundTruth:
    """Exact truth of one rendered frame, in frame pixels (OpenCV pixel-centre coordinates)."""

    state: EyeState
    pupil_x: float
    pupil_y: float
    pupil_w: float  # full minor axis, along pupil_angle_deg
    pupil_h: float  # full major axis
    pupil_angle_deg: float  # [0, 180), as cv2.fitEllipse
    pupil_visible_fraction: float  # of the pupil area inside the frame and not hidden by the lids
    blink: bool  # openness < 0.2
    lid_gap_px: float = 0.0  # gap between the lids at their centre column
    glints_px: tuple[tuple[float, float], ...] = ()  # centres of the glints that were drawn


@dataclass(frozen=True, slots=True)
class VirtualEyePreset:
    """Rendering difficulty knobs; every field has a realistic default."""

    width_px: int = 240
    height_px: int = 240
    fps: float = 60.0
    gaze_travel_frac: float = 0.2  # pupil travel at gaze ±1, fraction of the frame width / height
    max_gaze_angle_deg: float = 35.0  # horizontal eye rotation at gaze ±1
    center_offset_frac: tuple[float, float] = (0.0, 0.0)  # rest pupil offset from the frame centre
    off_axis_yaw_deg: float = 0.0  # camera beside the eye
    off_axis_pitch_deg: float = 0.0  # camera below (+) or above (-) the eye
    lid_occlusion: float = 0.0  # [0, 1] relaxed upper lid lower over the iris
    lash_count: int = 60
    lash_length_frac: float = 0.5  # of the iris radius
    lash_droop: float = 0.0  # fraction of upper lashes hanging down over the eye
    glint_count: int = 2  # 0-4 IR LED reflections
    glint_radius_px: float = 1.6
    glints_on_pupil_edge: bool = False  # at rest the glints sit on the edge of a mid-size pupil
    contrast: float = 1.0  # around mid grey
    brightness: float = 0.0  # grey levels added
    noise_sigma: float = 2.5  # sensor noise, grey levels
    blur_sigma_px: float = 0.7
    vignetting: float = 0.3  # gain lost in the frame corners
    jpeg_quality: int = 85  # 0 = no JPEG round trip
    texture_seed: int = 7  # skin, iris, lashes and glint layout
    script: str = "natural"  # behaviour: "natural" (GazeScript) or "step" (StepScript, for step responses)


PRESETS: dict[str, VirtualEyePreset] = {
    "default": VirtualEyePreset(),
    "easy": VirtualEyePreset(
        lash_count=0,
        glint_count=0,
        noise_sigma=0.0,
        blur_sigma_px=0.0,
        vignetting=0.0,
        jpeg_quality=0,
        contrast=1.15,
    ),
    "hard": VirtualEyePreset(
        off_axis_yaw_deg=22.0,
        off_axis_pitch_deg=16.0,
        lid_occlusion=0.55,
        lash_count=90,
        lash_length_frac=0.7,
        lash_droop=0.3,
        glint_count=4,
        glint_radius_px=2.2,
        glints_on_pupil_edge=True,
        contrast=0.55,
        brightness=10.0,
        noise_sigma=6.0,
        blur_sigma_px=1.5,
        vignetting=0.5,
        jpeg_quality=35,
        texture_seed=11,
    ),
    "small": VirtualEyePreset(
        width_px=100,
        height_px=60,
        fps=90.0,
        lash_count=14,
        lash_length_frac=0.35,
        glint_radius_px=0.9,
        noise_sigma=3.0,
        blur_sigma_px=0.5,
        jpeg_quality=75,
        texture_seed=5,
    ),
    "fast": VirtualEyePreset(
        fps=120.0,
        lash_count=0,
        glint_count=1,
        blur_sigma_px=0.0,
        vignetting=0.0,
        jpeg_quality=0,
    ),
    # Benchmarks (`bench pipeline`): the default eye at a camera's rates, unpaced, and a gaze step.
    "bench60": VirtualEyePreset(fps=60.0),
    "bench90": VirtualEyePreset(fps=90.0),
    "bench120": VirtualEyePreset(fps=120.0),
    "unthrottled": VirtualEyePreset(fps=1_000_000.0),
    "step": VirtualEyePreset(fps=90.0, script="step"),
}


# ---------------------------------------------------------------------------------------------------------
# Static layers, built once per preset


@dataclass(frozen=True, slots=True)
class _Geometry:
    width_px: int
    height_px: int
    rest_x: float  # pupil centre at gaze 0
    rest_y: float
    eye_x: float  # eyeball centre, projected
    eye_y: float
    eyeball_radius_px: float
    iris_radius_px: float
    pupil_depth_px: float  # eyeball centre to the iris plane
    yaw_max_rad: float
    pitch_max_rad: float
    camera: FloatArray  # 3x3 rotation from eye coordinates to camera coordinates
    rest_normal_xy: tuple[float, float]


@dataclass(frozen=True, slots=True)
class _Layers:
    geometry: _Geometry
    skin: FloatImage
    sclera: FloatImage
    iris_texture: FloatImage  # premultiplied grey and coverage, two channels
    iris_texture_radius: float
    gain: FloatImage | None
    offset: FloatImage | None
    noise_bank: FloatImage | None
    rows: FloatImage  # H x 1 row coordinates
    lash_u: FloatArray  # position along the lid, [-1, 1]
    lash_length_px: FloatArray
    lash_open_rad: FloatArray
    lash_closed_rad: FloatArray
    lash_bend_rad: FloatArray
    lash_lower: npt.NDArray[np.bool_]
    glint_rest_offsets: tuple[tuple[float, float], ...]


def _rotation(yaw_rad: float, pitch_rad: float) -> FloatArray:
    cy, sy = math.cos(yaw_rad), math.sin(yaw_rad)
    cp, sp = math.cos(pitch_rad), math.sin(pitch_rad)
    yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    rotation: FloatArray = pitch @ yaw
    return rotation


def _geometry(preset: VirtualEyePreset) -> _Geometry:
    w, h = preset.width_px, preset.height_px
    yaw_max = math.radians(preset.max_gaze_angle_deg)
    depth = preset.gaze_travel_frac * w / math.sin(yaw_max)
    eyeball = depth / math.sqrt(1.0 - IRIS_TO_EYEBALL**2)
    pitch_max = math.asin(min(0.98, preset.gaze_travel_frac * h / depth))
    camera = _rotation(math.radians(preset.off_axis_yaw_deg), math.radians(preset.off_axis_pitch_deg))
    rest_normal = camera @ np.array([0.0, 0.0, -1.0])
    rest_x = w / 2.0 + preset.center_offset_frac[0] * w
    rest_y = h / 2.0 + preset.center_offset_frac[1] * h
    return _Geometry(
        width_px=w,
        height_px=h,
        rest_x=rest_x,
        rest_y=rest_y,
        eye_x=rest_x - depth * float(rest_normal[0]),
        eye_y=rest_y - depth * float(rest_normal[1]),
        eyeball_radius_px=eyeball,
        iris_radius_px=eyeball * IRIS_TO_EYEBALL,
        pupil_depth_px=depth,
        yaw_max_rad=yaw_max,
        pitch_max_rad=pitch_max,
        camera=camera,
        rest_normal_xy=(float(rest_normal[0]), float(rest_normal[1])),
    )


def _smooth_field(rng: np.random.Generator, w: int, h: int, cells: int, amplitude: float) -> FloatImage:
    coarse = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) * np.float32(amplitude)


def _upper_shape(u: FloatArray) -> FloatArray:
    base = np.clip(1.0 - u * u, 0.0, 1.0)
    return np.power(base, 0.85) * (1.0 + 0.12 * u)


def _lower_shape(u: FloatArray) -> FloatArray:
    base = np.clip(1.0 - u * u, 0.0, 1.0)
    return np.power(base, 1.15) * (1.0 - 0.08 * u)


def _skin_layer(g: _Geometry, rng: np.random.Generator) -> FloatImage:
    w, h = g.width_px, g.height_px
    skin = np.full((h, w), SKIN_LEVEL, np.float32)
    skin += _smooth_field(rng, w, h, 5, 9.0)
    skin += _smooth_field(rng, w, h, 24, 3.0)
    skin += rng.normal(0.0, 1.5, (h, w)).astype(np.float32)
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)[:, None]
    r_i = g.iris_radius_px
    u = (xs - g.eye_x) / (g.eyeball_radius_px * LID_HALF_WIDTH_TO_EYEBALL * 1.1)
    corner = g.eye_y + LID_CORNER_HEIGHT * r_i
    # Lid crease above the eye and the shadowed fold under it.
    crease_y = corner + (UPPER_LID_RELAXED - 0.75 - LID_CORNER_HEIGHT) * r_i * _upper_shape(u)
    inside = np.clip(1.0 - u * u, 0.0, 1.0) ** 0.5  # fades out past the corners
    crease = np.exp(-(((ys - crease_y) / (0.12 * r_i)) ** 2)) * inside
    skin -= (22.0 * crease).astype(np.float32)
    # Puffy lower lid: a soft bright ridge then the darker under-eye.
    lower_y = corner + (LOWER_LID_RELAXED + 0.35 - LID_CORNER_HEIGHT) * r_i * _lower_shape(u)
    ridge = np.exp(-(((ys - lower_y) / (0.25 * r_i)) ** 2)) * inside
    under = np.exp(-(((ys - lower_y - 0.8 * r_i) / (0.4 * r_i)) ** 2)) * inside
    skin += (10.0 * ridge - 14.0 * under).astype(np.float32)
    return skin


def _sclera_layer(g: _Geometry, rng: np.random.Generator) -> FloatImage:
    w, h = g.width_px, g.height_px
    xs = np.arange(w, dtype=np.float64)[None, :] - g.eye_x
    ys = np.arange(h, dtype=np.float64)[:, None] - g.eye_y
    rho = np.sqrt(xs * xs + ys * ys) / g.eyeball_radius_px
    ball = SCLERA_LEVEL * (1.0 - 0.22 * np.clip(rho, 0.0, 1.0) ** 4)
    edge = np.clip((1.08 - rho) / 0.16, 0.0, 1.0)
    layer = CANTHUS_LEVEL + (ball - CANTHUS_LEVEL) * (edge * edge * (3.0 - 2.0 * edge))
    # Caruncle: a darker fleshy blob at the inner corner.
    inner_x = -1.12 * g.eyeball_radius_px
    caruncle = np.exp(-(((xs - inner_x) ** 2 + (ys - 0.1 * g.iris_radius_px) ** 2) / (0.3 * g.iris_radius_px) ** 2))
    layer -= 30.0 * caruncle
    out = layer.astype(np.float32)
    out += _smooth_field(rng, w, h, 12, 4.0)
    return out


def _iris_texture(radius_px: float, rng: np.random.Generator) -> tuple[FloatImage, float]:
    size = 2 * math.ceil(radius_px) + 7
    half = (size - 1) / 2.0
    xs = (np.arange(size, dtype=np.float64)[None, :] - half) / radius_px
    ys = (np.arange(size, dtype=np.float64)[:, None] - half) / radius_px
    rho = np.sqrt(xs * xs + ys * ys)
    phi = np.arctan2(ys, xs)
    tex = np.full((size, size), IRIS_LEVEL, np.float64)
    for _ in range(7):
        k = int(rng.integers(12, 70))
        tex += rng.uniform(2.0, 5.0) * np.cos(k * phi + rng.uniform(0, 2 * np.pi) + 3.0 * rho)
    # Crypts: small darker patches between the collarette and the rim.
    for _ in range(14):
        cr, cphi = rng.uniform(0.5, 0.85), rng.uniform(0, 2 * np.pi)
        d2 = (xs - cr * math.cos(cphi)) ** 2 + (ys - cr * math.sin(cphi)) ** 2
        tex -= 9.0 * np.exp(-d2 / (2 * rng.uniform(0.03, 0.06) ** 2))
    tex += 8.0 * np.exp(-(((rho - 0.48) / 0.07) ** 2))  # collarette
    tex -= 34.0 * np.clip((rho - 0.78) / 0.22, 0.0, 1.0) ** 1.5  # limbal ring
    tex += rng.normal(0.0, 2.0, tex.shape)
    tex = np.clip(tex, 70.0, 200.0)
    # Premultiplied colour and coverage of the disc, warped together in one call per frame.
    alpha = np.clip(radius_px - rho * radius_px + 0.5, 0.0, 1.0)
    return np.dstack([tex * alpha, alpha]).astype(np.float32), radius_px


def _lashes(
    preset: VirtualEyePreset, g: _Geometry, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    upper = preset.lash_count
    # A few stray lower lashes look like specks in a small crop: only dense lash lines get them.
    lower = preset.lash_count // 5 if preset.lash_count >= 30 else 0
    n = upper + lower
    u = np.concatenate([rng.uniform(-0.85, 0.92, upper), rng.uniform(-0.55, 0.8, lower)])
    length = g.iris_radius_px * preset.lash_length_frac * rng.uniform(0.45, 1.0, n)
    length[upper:] *= 0.35
    fan = np.radians(55.0) * u
    open_rad = -np.pi / 2 + fan + rng.normal(0.0, np.radians(12.0), n)
    droop = rng.uniform(0.0, 1.0, n) < preset.lash_droop
    droop[upper:] = False
    open_rad[droop] = np.pi / 2 + 0.6 * fan[droop] + rng.normal(0.0, np.radians(15.0), int(droop.sum()))
    # A closing lid turns its lashes down over the eye.
    closed_rad = np.pi / 2 - 0.4 * fan + rng.normal(0.0, np.radians(10.0), n)
    open_rad[upper:] = np.pi / 2 - 0.8 * fan[upper:] + rng.normal(0.0, np.radians(10.0), lower)
    closed_rad[upper:] = open_rad[upper:]
    # Lashes curl outwards, away from the eye's middle.
    bend = rng.uniform(0.25, 0.6, n) * np.clip(2.0 * u + rng.normal(0.0, 0.4, n), -1.0, 1.0)
    lower_mask = np.zeros(n, np.bool_)
    lower_mask[upper:] = True
    return u, length, open_rad, closed_rad, bend, lower_mask


def _glint_offsets(preset: VirtualEyePreset, g: _Geometry, rng: np.random.Generator) -> tuple[tuple[float, float], ...]:
    count = max(0, min(4, preset.glint_count))
    mid_pupil = g.iris_radius_px * (PUPIL_MIN_TO_IRIS + 0.5 * PUPIL_RANGE_TO_IRIS)
    base_angles = np.radians([-135.0, -40.0, 40.0, 140.0])
    offsets = []
    for k in range(count):
        angle = base_angles[k] + rng.normal(0.0, 0.15)
        # On the edge: the hard case for detectors, a glint cutting into the pupil's outline.
        radius = mid_pupil if preset.glints_on_pupil_edge else g.iris_radius_px * rng.uniform(0.3, 0.75)
        offsets.append((radius * math.cos(angle), radius * math.sin(angle)))
    return tuple(offsets)


# A camera process renders one preset at a time; each preset's layers hold about 15 MB (at 16, a camera that went
# through the benchmark's presets kept 60 MB of them).
LAYER_CACHE_PRESETS = 2


@lru_cache(maxsize=LAYER_CACHE_PRESETS)
def _layers(preset: VirtualEyePreset) -> _Layers:
    rng = np.random.default_rng(preset.texture_seed)
    g = _geometry(preset)
    w, h = g.width_px, g.height_px
    mid = 128.0
    xs = (np.arange(w, dtype=np.float64)[None, :] - (w - 1) / 2.0) / ((w - 1) / 2.0)
    ys = (np.arange(h, dtype=np.float64)[:, None] - (h - 1) / 2.0) / ((h - 1) / 2.0)
    vignette = 1.0 - preset.vignetting * np.clip((xs * xs + ys * ys) / 2.0, 0.0, 1.0)
    gain: FloatImage | None = None
    offset: FloatImage | None = None
    # Rounding to the nearest level happens through this +0.5 before truncation.
    if preset.vignetting != 0.0 or preset.contrast != 1.0 or preset.brightness != 0.0:
        gain = (preset.contrast * vignette).astype(np.float32)
        offset = ((mid * (1.0 - preset.contrast) + preset.brightness) * vignette + 0.5).astype(np.float32)
    noise_bank = None
    if preset.noise_sigma > 0.0:
        noise_bank = rng.normal(0.0, preset.noise_sigma, (2 * h, 2 * w)).astype(np.float32)
    iris, iris_radius = _iris_texture(g.iris_radius_px, rng)
    lash_u, lash_len, lash_open, lash_closed, lash_bend, lash_lower = _lashes(preset, g, rng)
    return _Layers(
        geometry=g,
        skin=_skin_layer(g, rng),
        sclera=_sclera_layer(g, rng),
        iris_texture=iris,
        iris_texture_radius=iris_radius,
        gain=gain,
        offset=offset,
        noise_bank=noise_bank,
        rows=np.arange(h, dtype=np.float32)[:, None],
        lash_u=lash_u,
        lash_length_px=lash_len,
        lash_open_rad=lash_open,
        lash_closed_rad=lash_closed,
        lash_bend_rad=lash_bend,
        lash_lower=lash_lower,
        glint_rest_offsets=_glint_offsets(preset, g, rng),
    )


# ---------------------------------------------------------------------------------------------------------
# Per-frame geometry


@dataclass(frozen=True, slots=True)
class _EyePose:
    pupil_x: float
    pupil_y: float
    basis: FloatArray  # 2x2: image offsets of the iris plane's unit x and y axes
    cornea_x: float
    cornea_y: float


def _pose(state: EyeState, g: _Geometry) -> _EyePose:
    yaw = state.gaze_x * g.yaw_max_rad
    pitch = state.gaze_y * g.pitch_max_rad
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    # Camera coordinates: x right, y down, z from the camera into the face. Looking right moves the
    # pupil to the image's left, looking up moves it up.
    normal = np.array([-sy * cp, -sp, -cy * cp])
    axis_x = np.array([cy, 0.0, -sy])
    axis_y = np.cross(axis_x, normal)
    normal, axis_x, axis_y = g.camera @ normal, g.camera @ axis_x, g.camera @ axis_y
    depth = g.pupil_depth_px
    cornea = CORNEA_CENTRE_TO_PUPIL * depth
    return _EyePose(
        pupil_x=g.eye_x + depth * float(normal[0]),
        pupil_y=g.eye_y + depth * float(normal[1]),
        basis=np.array([[axis_x[0], axis_y[0]], [axis_x[1], axis_y[1]]]),
        cornea_x=g.eye_x + cornea * float(normal[0]),
        cornea_y=g.eye_y + cornea * float(normal[1]),
    )


def _ellipse_axes(basis: FloatArray, radius_px: float) -> tuple[float, float, float]:
    """Full minor axis, full major axis and the minor axis' angle (cv2.fitEllipse convention)."""
    u, s, _ = np.linalg.svd(basis * radius_px)
    major, minor = float(s[0]), float(s[1])
    minor_dir = u[:, 1]
    angle = math.degrees(math.atan2(float(minor_dir[1]), float(minor_dir[0]))) % 180.0
    if angle >= 180.0 - 1e-9:
        angle = 0.0
    return 2.0 * minor, 2.0 * major, angle


@dataclass(frozen=True, slots=True)
class _Lids:
    center_x: float
    half_width_px: float
    corner_y: float  # at the centre column
    corner_slope: float
    upper_h: float  # lid height above (-) or below (+) the corner line at the centre column
    lower_h: float

    def upper(self, xs: FloatArray) -> FloatArray:
        u = (xs - self.center_x) / self.half_width_px
        corner = self.corner_y + self.corner_slope * (xs - self.center_x)
        return corner + self.upper_h * _upper_shape(u)

    def lower(self, xs: FloatArray) -> FloatArray:
        u = (xs - self.center_x) / self.half_width_px
        corner = self.corner_y + self.corner_slope * (xs - self.center_x)
        return corner + self.lower_h * _lower_shape(u)


def _lids(state: EyeState, preset: VirtualEyePreset, g: _Geometry, pose: _EyePose) -> _Lids:
    r_i = g.iris_radius_px
    follow = LID_GAZE_FOLLOW * (pose.pupil_y - g.rest_y)
    centre_y = g.eye_y + follow
    upper0 = UPPER_LID_RELAXED + OCCLUSION_DROP * preset.lid_occlusion
    upper0 += -WIDEN_RAISE * state.widen + SQUEEZE_UPPER * state.squeeze
    lower0 = LOWER_LID_RELAXED - SQUEEZE_LOWER * state.squeeze
    # Both lids close linearly towards one closure line, so the gap is openness * (lower0 - upper0).
    upper = LID_CLOSURE_HEIGHT + (upper0 - LID_CLOSURE_HEIGHT) * state.openness
    lower = LID_CLOSURE_HEIGHT + (lower0 - LID_CLOSURE_HEIGHT) * state.openness
    return _Lids(
        center_x=g.eye_x,
        half_width_px=g.eyeball_radius_px * LID_HALF_WIDTH_TO_EYEBALL,
        corner_y=centre_y + LID_CORNER_HEIGHT * r_i,
        corner_slope=-0.06,
        upper_h=(upper - LID_CORNER_HEIGHT) * r_i,
        lower_h=(lower - LID_CORNER_HEIGHT) * r_i,
    )


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def _clamped(state: EyeState) -> EyeState:
    return EyeState(
        gaze_x=min(1.0, max(-1.0, state.gaze_x)),
        gaze_y=min(1.0, max(-1.0, state.gaze_y)),
        openness=_clamp01(state.openness),
        dilation=_clamp01(state.dilation),
        widen=_clamp01(state.widen),
        squeeze=_clamp01(state.squeeze),
    )


def _ellipse_coverage(
    cx: float, cy: float, basis: FloatArray, radius_px: float, x0: int, y0: int, w: int, h: int
) -> FloatImage:
    """Area fraction of each pixel in the window inside the ellipse (signed-distance antialiasing)."""
    inv = np.linalg.inv(basis * radius_px)
    dx = np.arange(x0, x0 + w, dtype=np.float64)[None, :] - cx
    dy = np.arange(y0, y0 + h, dtype=np.float64)[:, None] - cy
    qx = inv[0, 0] * dx + inv[0, 1] * dy
    qy = inv[1, 0] * dx + inv[1, 1] * dy
    gx = inv[0, 0] * qx + inv[1, 0] * qy
    gy = inv[0, 1] * qx + inv[1, 1] * qy
    g2 = qx * qx + qy * qy
    grad = np.sqrt(gx * gx + gy * gy)
    # First-order distance to the boundary: (|q| - 1) / |grad |q||, with grad |q| = inv^T q / |q|.
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(grad > 0.0, (g2 - np.sqrt(g2)) / grad, -1.0)
    return np.clip(0.5 - dist, 0.0, 1.0).astype(np.float32)


def _window(cx: float, cy: float, half_w: float, half_h: float, w: int, h: int) -> tuple[int, int, int, int]:
    x0 = max(0, math.floor(cx - half_w) - 1)
    y0 = max(0, math.floor(cy - half_h) - 1)
    x1 = min(w, math.ceil(cx + half_w) + 2)
    y1 = min(h, math.ceil(cy + half_h) + 2)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def _draw_iris(eye: FloatImage, layers: _Layers, pose: _EyePose) -> None:
    g = layers.geometry
    r_i = g.iris_radius_px
    extent = np.abs(pose.basis * r_i).sum(axis=1)
    x0, y0, w, h = _window(pose.pupil_x, pose.pupil_y, float(extent[0]), float(extent[1]), g.width_px, g.height_px)
    if w == 0 or h == 0:
        return
    inv = np.linalg.inv(pose.basis * r_i) * layers.iris_texture_radius
    half = (layers.iris_texture.shape[0] - 1) / 2.0
    shift = half - inv @ np.array([pose.pupil_x - x0, pose.pupil_y - y0])
    to_texture = np.hstack([inv, shift[:, None]])
    warped = cv2.warpAffine(
        layers.iris_texture,
        to_texture,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    roi = eye[y0 : y0 + h, x0 : x0 + w]
    roi *= 1.0 - warped[:, :, 1]
    roi += warped[:, :, 0]


def _aperture(layers: _Layers, lids: _Lids) -> tuple[int, int, int, int, FloatImage]:
    """Window (x0, y0, w, h) around the lid opening and the visible fraction of each pixel in it."""
    g = layers.geometry
    x0 = max(0, math.floor(lids.center_x - lids.half_width_px) - 1)
    x1 = min(g.width_px, math.ceil(lids.center_x + lids.half_width_px) + 2)
    xs = np.arange(x0, x1, dtype=np.float64)
    top = lids.upper(xs)
    bottom = np.maximum(lids.lower(xs), top)
    y0 = max(0, math.floor(float(top.min())) - 1)
    y1 = min(g.height_px, math.ceil(float(bottom.max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return x0, y0, 0, 0, np.zeros((0, 0), np.float32)
    rows = layers.rows[y0:y1]
    # Exact vertical coverage of each pixel [i - 0.5, i + 0.5) by the opening [top, bottom).
    alpha = np.minimum(rows + 0.5, bottom.astype(np.float32)) - np.maximum(rows - 0.5, top.astype(np.float32))
    np.clip(alpha, 0.0, 1.0, out=alpha)
    return x0, y0, x1 - x0, y1 - y0, alpha


def _polyline(xs: FloatArray, ys: FloatArray) -> npt.NDArray[np.int32]:
    pts = np.stack([xs, ys], axis=-1) * SUBPIXEL_SCALE
    return np.round(pts).astype(np.int32)


def _draw_lid_margins(img: FloatImage, lids: _Lids, r_i: float) -> None:
    xs = lids.center_x + lids.half_width_px * np.linspace(-0.97, 0.97, LID_SAMPLES)
    thick = max(1, round(0.05 * r_i))
    # Both margins lie on the lid side of the opening, so the truth's visible fraction is what shows.
    upper = lids.upper(xs) - (0.5 * thick + 0.5)
    cv2.polylines(img, [_polyline(xs, upper)], False, LID_MARGIN_LEVEL, thick, cv2.LINE_AA, SUBPIXEL_SHIFT)
    lower = np.maximum(lids.lower(xs), lids.upper(xs)) + 1.0
    cv2.polylines(img, [_polyline(xs, lower)], False, SKIN_LEVEL + 18.0, 1, cv2.LINE_AA, SUBPIXEL_SHIFT)


def _draw_lashes(img: FloatImage, layers: _Layers, lids: _Lids, openness: float) -> None:
    if layers.lash_u.size == 0:
        return
    xs = lids.center_x + lids.half_width_px * layers.lash_u
    roots_y = np.where(layers.lash_lower, np.maximum(lids.lower(xs), lids.upper(xs)), lids.upper(xs))
    angle = layers.lash_closed_rad + (layers.lash_open_rad - layers.lash_closed_rad) * openness
    step = layers.lash_length_px / 3.0
    bend = layers.lash_bend_rad / 2.0
    px, py = [xs], [roots_y]
    for k in range(3):
        heading = angle + bend * k
        px.append(px[-1] + step * np.cos(heading))
        py.append(py[-1] + step * np.sin(heading))
    strands = _polyline(np.stack(px, axis=1), np.stack(py, axis=1))
    lower = layers.lash_lower
    cv2.polylines(img, list(strands[~lower]), False, LASH_LEVEL, 1, cv2.LINE_AA, SUBPIXEL_SHIFT)
    if lower.any():
        cv2.polylines(img, list(strands[lower]), False, LOWER_LASH_LEVEL, 1, cv2.LINE_AA, SUBPIXEL_SHIFT)


def _draw_glints(
    img: FloatImage, layers: _Layers, preset: VirtualEyePreset, pose: _EyePose, lids: _Lids
) -> tuple[tuple[float, float], ...]:
    g = layers.geometry
    rest_x = g.rest_x - g.eye_x - CORNEA_CENTRE_TO_PUPIL * g.pupil_depth_px * g.rest_normal_xy[0]
    rest_y = g.rest_y - g.eye_y - CORNEA_CENTRE_TO_PUPIL * g.pupil_depth_px * g.rest_normal_xy[1]
    drawn = []
    radius = round(preset.glint_radius_px * SUBPIXEL_SCALE)
    for off_x, off_y in layers.glint_rest_offsets:
        # The LEDs are fixed: a glint keeps its offset from the cornea's centre of curvature.
        gx = pose.cornea_x + rest_x + off_x
        gy = pose.cornea_y + rest_y + off_y
        on_cornea = math.hypot(gx - pose.pupil_x, gy - pose.pupil_y) < 1.05 * g.iris_radius_px
        xs = np.array([gx])
        margin = preset.glint_radius_px
        inside = float(lids.upper(xs)[0]) + margin < gy < float(lids.lower(xs)[0]) - margin
        if not (on_cornea and inside and 0.0 <= gx < g.width_px and 0.0 <= gy < g.height_px):
            continue
        centre = (round(gx * SUBPIXEL_SCALE), round(gy * SUBPIXEL_SCALE))
        cv2.circle(img, centre, radius, GLINT_LEVEL, -1, cv2.LINE_AA, SUBPIXEL_SHIFT)
        drawn.append((gx, gy))
    return tuple(drawn)


def render_eye(state: EyeState, preset: VirtualEyePreset, rng: np.random.Generator) -> tuple[GrayImage, EyeGroundTruth]:
    """Render one grayscale frame of `state` and its exact ground truth (pure; randomness from `rng`)."""
    gray, _, truth = _render_frame(state, preset, rng)
    return gray, truth


def _render_frame(
    state: EyeState, preset: VirtualEyePreset, rng: np.random.Generator
) -> tuple[GrayImage, bytes | None, EyeGroundTruth]:
    """`render_eye`, plus the JPEG the frame went through (None without a JPEG round trip)."""
    state = _clamped(state)
    layers = _layers(preset)
    g = layers.geometry
    r_i = g.iris_radius_px
    pose = _pose(state, g)
    lids = _lids(state, preset, g, pose)
    pupil_radius = r_i * (PUPIL_MIN_TO_IRIS + PUPIL_RANGE_TO_IRIS * state.dilation)

    eye = layers.sclera.copy()
    _draw_iris(eye, layers, pose)
    extent = np.abs(pose.basis * pupil_radius).sum(axis=1)
    px0, py0, pw, ph = _window(pose.pupil_x, pose.pupil_y, float(extent[0]), float(extent[1]), g.width_px, g.height_px)
    pupil_cov = _ellipse_coverage(pose.pupil_x, pose.pupil_y, pose.basis, pupil_radius, px0, py0, pw, ph)
    pupil_roi = eye[py0 : py0 + ph, px0 : px0 + pw]
    pupil_roi += (PUPIL_LEVEL - pupil_roi) * pupil_cov

    out = layers.skin.copy()
    ax0, ay0, aw, ah, alpha = _aperture(layers, lids)
    if aw > 0 and ah > 0:
        upper = lids.upper(np.arange(ax0, ax0 + aw, dtype=np.float64)).astype(np.float32)
        below_lid = layers.rows[ay0 : ay0 + ah] - upper
        shadow_width = LID_SHADOW_WIDTH_TO_IRIS * r_i
        shade = 1.0 - LID_SHADOW_DEPTH * np.clip(1.0 - below_lid / shadow_width, 0.0, 1.0)
        eye_roi = eye[ay0 : ay0 + ah, ax0 : ax0 + aw] * shade
        skin_roi = out[ay0 : ay0 + ah, ax0 : ax0 + aw]
        skin_roi += (eye_roi - skin_roi) * alpha
    _draw_lid_margins(out, lids, r_i)
    _draw_lashes(out, layers, lids, state.openness)
    glints = _draw_glints(out, layers, preset, pose, lids)

    if preset.blur_sigma_px > 0.0:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), preset.blur_sigma_px), dtype=np.float32)
    if layers.gain is not None and layers.offset is not None:
        out *= layers.gain
        out += layers.offset
    else:
        out += 0.5
    if layers.noise_bank is not None:
        oy = int(rng.integers(0, g.height_px))
        ox = int(rng.integers(0, g.width_px))
        out += layers.noise_bank[oy : oy + g.height_px, ox : ox + g.width_px]
    np.clip(out, 0.0, 255.0, out=out)
    gray: GrayImage = out.astype(np.uint8)
    encoded = _encode_jpeg(gray, preset.jpeg_quality) if preset.jpeg_quality > 0 else None
    decoded = _decode_jpeg(encoded) if encoded is not None else None
    if decoded is not None:
        gray = decoded
    else:
        encoded = None

    # Visible fraction from the same coverage maps that were drawn; what falls outside the frame is hidden.
    width, height, angle = _ellipse_axes(pose.basis, pupil_radius)
    pupil_area = math.pi * width * height / 4.0
    visible = 0.0
    if pupil_area > 0.0 and aw > 0 and ah > 0:
        ix0, iy0 = max(px0, ax0), max(py0, ay0)
        ix1, iy1 = min(px0 + pw, ax0 + aw), min(py0 + ph, ay0 + ah)
        if ix1 > ix0 and iy1 > iy0:
            p = pupil_cov[iy0 - py0 : iy1 - py0, ix0 - px0 : ix1 - px0]
            a = alpha[iy0 - ay0 : iy1 - ay0, ix0 - ax0 : ix1 - ax0]
            visible = float((p * a).sum()) / pupil_area
    centre = np.array([lids.center_x])
    truth = EyeGroundTruth(
        state=state,
        pupil_x=pose.pupil_x,
        pupil_y=pose.pupil_y,
        pupil_w=width,
        pupil_h=height,
        pupil_angle_deg=angle,
        pupil_visible_fraction=min(1.0, max(0.0, visible)),
        blink=state.openness < BLINK_OPENNESS,
        lid_gap_px=max(0.0, float(lids.lower(centre)[0] - lids.upper(centre)[0])),
        glints_px=glints,
    )
    return gray, encoded, truth


def _encode_jpeg(gray: GrayImage, quality: int) -> bytes | None:
    ok, encoded = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return encoded.tobytes() if ok else None


def _decode_jpeg(jpeg: bytes) -> GrayImage | None:
    decoded = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if decoded is None else np.asarray(decoded, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------
# Scripted behaviour

_MASK64 = (1 << 64) - 1
GAZE_SEGMENT_S = 1.0
SWEEP_EVERY_SEGMENTS = 5  # every 5th segment is a smooth sweep to a corner of the range
BLINK_CELL_S = 3.5  # one blink per cell: at most ~7 s between blinks
EPISODE_CELL_S = 8.0
EPISODE_RAMP_S = 0.35
_SWEEP_CORNERS = ((1.0, 1.0), (-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0))


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _uniforms(seed: int, stream: int, index: int, count: int) -> list[float]:
    """`count` uniforms in [0, 1) that depend only on (seed, stream, index): no state, same in any process."""
    state = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ stream) ^ (index & _MASK64))
    out = []
    for _ in range(count):
        state = _splitmix64(state)
        out.append((state >> 11) / float(1 << 53))
    return out


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def _min_jerk(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


class GazeScript:
    """Deterministic eye behaviour from a seed: `state_at(t_s)` is a pure function of (seed, t_s).

    Gaze moves in 1 s segments between targets: a fixation then a saccade (a fast minimum-jerk jump), or a
    smooth pursuit; every 5th segment sweeps smoothly to a corner of the range, so 20 s visit all four.
    One blink (150-300 ms, openness 1 -> 0 -> 1) falls in every 3.5 s cell; 8 s cells may hold a widen,
    squeeze or half-closed episode; dilation drifts slowly.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        u = _uniforms(seed, 1, 0, 4)
        self._dilation_phases = (u[0] * 2 * math.pi, u[1] * 2 * math.pi)
        self._jitter_phases = (u[2] * 2 * math.pi, u[3] * 2 * math.pi)

    def _target(self, segment: int) -> tuple[float, float]:
        u = _uniforms(self.seed, 2, segment, 3)
        if segment % SWEEP_EVERY_SEGMENTS == 0:
            sx, sy = _SWEEP_CORNERS[(segment // SWEEP_EVERY_SEGMENTS + self.seed) % len(_SWEEP_CORNERS)]
            return sx * (0.88 + 0.12 * u[0]), sy * (0.85 + 0.15 * u[1])
        return 1.8 * u[0] - 0.9, 1.6 * u[1] - 0.8

    def _gaze(self, t_s: float) -> tuple[float, float]:
        segment = math.floor(t_s / GAZE_SEGMENT_S)
        local = t_s / GAZE_SEGMENT_S - segment
        x0, y0 = self._target(segment - 1)
        x1, y1 = self._target(segment)
        kind, when = _uniforms(self.seed, 3, segment, 2)
        if segment % SWEEP_EVERY_SEGMENTS == 0 or kind < 0.3:
            k = 0.5 - 0.5 * math.cos(math.pi * local)  # pursuit: smooth start and stop
        else:
            amplitude_deg = 45.0 * math.hypot(x1 - x0, y1 - y0)
            duration = (0.025 + 0.0022 * amplitude_deg) / GAZE_SEGMENT_S  # main-sequence saccade length
            start = 0.1 + 0.75 * when
            k = _min_jerk((local - start) / duration)
        # Fixational drift: a small, smooth wander.
        jx = 0.012 * math.sin(2 * math.pi * 1.3 * t_s + self._jitter_phases[0])
        jy = 0.012 * math.sin(2 * math.pi * 1.7 * t_s + self._jitter_phases[1])
        gx = x0 + (x1 - x0) * k + jx
        gy = y0 + (y1 - y0) * k + jy
        return min(1.0, max(-1.0, gx)), min(1.0, max(-1.0, gy))

    def _blink_openness(self, t_s: float) -> float:
        cell = math.floor(t_s / BLINK_CELL_S)
        start_u, length_u = _uniforms(self.seed, 4, cell, 2)
        duration = 0.15 + 0.15 * length_u
        start = cell * BLINK_CELL_S + 0.2 + start_u * (BLINK_CELL_S - duration - 0.4)
        phase = (t_s - start) / duration
        if phase <= 0.0 or phase >= 1.0:
            return 1.0
        # Fast close, a short closed moment, slower open.
        if phase < 0.35:
            return 1.0 - _smoothstep(phase / 0.35)
        if phase < 0.45:
            return 0.0
        return _smoothstep((phase - 0.45) / 0.55)

    def _episode(self, t_s: float) -> tuple[float, float, float]:
        """(openness factor, widen, squeeze) of the 8 s cell's episode."""
        cell = math.floor(t_s / EPISODE_CELL_S)
        kind, start_u, length_u, level_u = _uniforms(self.seed, 5, cell, 4)
        duration = 1.5 + 1.5 * length_u
        start = cell * EPISODE_CELL_S + 0.3 + start_u * (EPISODE_CELL_S - duration - 0.6)
        into = t_s - start
        weight = _smoothstep(into / EPISODE_RAMP_S) * _smoothstep((duration - into) / EPISODE_RAMP_S)
        if kind < 0.3:
            return 1.0, weight * (0.5 + 0.5 * level_u), 0.0
        if kind < 0.6:
            return 1.0, 0.0, weight * (0.4 + 0.6 * level_u)
        if kind < 0.8:
            return 1.0 - weight * (0.2 + 0.4 * level_u), 0.0, 0.0
        return 1.0, 0.0, 0.0

    def state_at(self, t_s: float) -> EyeState:
        gaze_x, gaze_y = self._gaze(t_s)
        factor, widen, squeeze = self._episode(t_s)
        p0, p1 = self._dilation_phases
        dilation = 0.5 + 0.3 * math.sin(2 * math.pi * t_s / 17.0 + p0) + 0.1 * math.sin(2 * math.pi * t_s / 6.3 + p1)
        return EyeState(
            gaze_x=gaze_x,
            gaze_y=gaze_y,
            openness=_clamp01(factor * self._blink_openness(t_s)),
            dilation=_clamp01(dilation),
            widen=widen,
            squeeze=squeeze,
        )


class StepScript:
    """Gaze x holds -amplitude, then jumps to +amplitude every `half_period_s`; eyes open, no blinks.

    For step-response measurements: the jump happens at exactly `k * half_period_s` of script time.
    """

    def __init__(self, amplitude: float = 0.5, half_period_s: float = 2.0) -> None:
        self.amplitude = amplitude
        self.half_period_s = half_period_s

    def state_at(self, t_s: float) -> EyeState:
        high = math.floor(t_s / self.half_period_s) % 2 == 1
        return EyeState(gaze_x=self.amplitude if high else -self.amplitude, gaze_y=0.0, openness=1.0, dilation=0.5)


# ---------------------------------------------------------------------------------------------------------
# The camera source


def virtual_preset(name: str) -> VirtualEyePreset:
    """The preset called `name`, or SourceError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise SourceError(f"unknown virtual eye preset {name!r}; known presets: {known}") from None


@dataclass(slots=True)
class _Pacing:
    opened_at: float = 0.0
    next_due: float = 0.0


# The pipeline benchmark's presets replay one pre-rendered loop of their script instead of rendering each
# frame live (~1.1 ms a 240x240 frame in the camera process, a simulation cost no real camera has), so
# `bench pipeline` measures the pipeline. Each frame is exactly what render_eye gives for its script time;
# the loop is kept as the JPEGs the renderer makes anyway (~10 kB a frame), decoded on delivery as a
# camera's frames are.
# Above this rate the virtual eye stands for no camera: it makes frames as fast as the tracker takes them.
MAX_CAMERA_FPS = 1000.0
REPLAYED_PRESETS = frozenset({"bench60", "bench90", "bench120", "unthrottled"})
REPLAY_LOOP_S = 4.0
REPLAY_MAX_FPS = 120.0  # script-time step of the loop for faster presets (unthrottled): 480 frames at most


@dataclass(frozen=True, slots=True)
class _ReplayLoop:
    fps: float  # script time between consecutive frames is 1 / fps
    frames: tuple[bytes | GrayImage, ...]  # the JPEG render_eye decoded, or the frame when it had none
    truths: tuple[EyeGroundTruth, ...]

    def frame(self, index: int) -> tuple[GrayImage, EyeGroundTruth]:
        at = index % len(self.frames)
        stored = self.frames[at]
        gray = _decode_jpeg(stored) if isinstance(stored, bytes) else stored.copy()
        if gray is None:  # cannot happen: the renderer decoded the same bytes
            raise SourceError("virtual eye: a replayed frame did not decode")
        return gray, self.truths[at]


@lru_cache(maxsize=2)
def _replay_loop(preset_name: str, seed: int, fps: float) -> _ReplayLoop:
    """Render `REPLAY_LOOP_S` of the preset's script once per process (a reconnect reuses it)."""
    preset = virtual_preset(preset_name)
    loop_fps = min(fps, REPLAY_MAX_FPS)
    script = _script_for(preset, seed)
    rng = np.random.default_rng(seed)
    frames: list[bytes | GrayImage] = []
    truths: list[EyeGroundTruth] = []
    for index in range(max(1, round(REPLAY_LOOP_S * loop_fps))):
        gray, jpeg, truth = _render_frame(script.state_at(index / loop_fps), preset, rng)
        frames.append(gray if jpeg is None else jpeg)
        truths.append(truth)
    return _ReplayLoop(loop_fps, tuple(frames), tuple(truths))


def _script_for(preset: VirtualEyePreset, seed: int) -> GazeScript | StepScript:
    return StepScript() if preset.script == "step" else GazeScript(seed)


class VirtualEyeSource:
    """The virtual eye as a FrameSource: scripted behaviour rendered at the preset's frame rate.

    paced=True delivers frames on the monotonic clock at `fps` (waiting at most `timeout_s` per read, None on
    timeout; a late reader gets the current frame, not a backlog); paced=False renders as fast as asked.
    The script's time is the time since open(); each frame carries its EyeGroundTruth as `truth`.
    The benchmark presets (`REPLAYED_PRESETS`) render `REPLAY_LOOP_S` of their script at open() and replay
    that loop: the script time wraps every `REPLAY_LOOP_S`, and each frame and its truth are unchanged.
    """

    def __init__(
        self,
        preset: str = "default",
        seed: int = 0,
        fps: float | None = None,
        paced: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.preset_name = preset
        self.preset = virtual_preset(preset)
        self.fps = float(fps) if fps is not None else self.preset.fps
        if not self.fps > 0.0:
            raise SourceError(f"virtual eye fps must be positive, got {fps!r}")
        self.seed = seed
        self.paced = paced
        self.counters = SourceCounters()
        # Unpaced, or faster than any camera (the `unthrottled` preset): no clock of its own.
        self.waits_for_reader = not paced or self.fps > MAX_CAMERA_FPS
        self._clock = clock
        self._sleep = sleep
        self._script = _script_for(self.preset, seed)
        self._rng = np.random.default_rng(seed)
        self._pacing: _Pacing | None = None
        self._period_s = 1.0 / self.fps
        self._replay: _ReplayLoop | None = None

    def open(self) -> None:
        _layers(self.preset)  # build the static layers now, not inside the first read
        if self.preset_name in REPLAYED_PRESETS:
            self._replay = _replay_loop(self.preset_name, self.seed, self.fps)
        now = self._clock()
        self._rng = np.random.default_rng(self.seed)
        self._pacing = _Pacing(opened_at=now, next_due=now)

    def read(self, timeout_s: float) -> CapturedFrame | None:
        pacing = self._pacing
        if pacing is None:
            raise SourceError("virtual eye source is not open")
        if self.paced:
            wait_s = pacing.next_due - self._clock()
            if wait_s > timeout_s:
                self._sleep(max(0.0, timeout_s))
                return None
            if wait_s > 0.0:
                self._sleep(wait_s)
        start = self._clock()
        if self.paced:
            # Keep the cadence; after a stall restart it from now rather than bursting to catch up.
            behind = start - pacing.next_due > self._period_s
            pacing.next_due = (start if behind else pacing.next_due) + self._period_s
        script_time_s = start - pacing.opened_at
        if self._replay is not None:
            # The loop's frame nearest this script time: the eye moves at its scripted speed at any frame
            # rate (an unthrottled reader sees each frame a few times, as a fast camera sees a still eye).
            gray, truth = self._replay.frame(round(script_time_s * self._replay.fps))
        else:
            gray, truth = render_eye(self._script.state_at(script_time_s), self.preset, self._rng)
        self.counters.received += 1
        self.counters.decoded += 1
        return CapturedFrame(gray=gray, capture_ts=self._clock(), truth=truth)

    def close(self) -> None:
        self._pacing = None
