"""A cheap per-frame check that a pupil can be in the frame at all, so a closed eye skips the pupil search.

With the lid shut the search refines every coarse candidate with every configured algorithm and finds
nothing: a closed-eye frame cost about 9 ms against about 1 ms for an open one, and set the pipeline's
latency p99. The gate learns, from confident finds, how dark this user's pupil and the iris around it are;
a frame whose darkest pupil-sized patch is not much darker than the iris holds no pupil, and is skipped.

It is meant to skip only where the search would find nothing: a frame with anything pupil-dark in it
(lashes or shadows included) is searched as before, levels are trusted only with a clear pupil-to-iris
contrast, and while skipping, every PROBE_EVERY-th frame is searched anyway; a probe that finds a clear
pupil makes the gate learn its levels anew, so a change of light costs a few frames, never the track.
`algorithm.closed_eye_gate` turns it off.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from app.tracking.pupil.ellipse import as_u8, shrunk
from app.tracking.results import PupilResult

GrayU8 = npt.NDArray[np.uint8]

# The check runs on the frame shrunk to about this side (as the coarse Haar search does).
GATE_SIDE_PX = 64
# A patch of this many shrunk pixels (about a small pupil's inner part) must be dark, not a lash.
PATCH_PX = 3
# The darkest patch must lie within this fraction of the way from the pupil's level to the iris's.
DARK_FRACTION = 0.6
# Below this pupil-to-iris contrast (grey levels) the levels are not trusted and nothing is skipped.
MIN_CONTRAST = 30.0
# Finds at least this confident teach the levels; each find moves them by this share.
LEARN_CONFIDENCE = 0.9
LEARN_RATE = 0.1
# While frames are skipped, every this-many-th one is searched anyway.
PROBE_EVERY = 10
# The iris is sampled at this multiple of the pupil radius, in these directions (at least MIN_RING_SAMPLES
# inside the frame).
IRIS_RING_RADIUS = 1.85
RING_DIRECTIONS = tuple((math.cos(k * math.pi / 8), math.sin(k * math.pi / 8)) for k in range(16))
MIN_RING_SAMPLES = 6


class PupilGate:
    """Call `allows(gray)` before the search, then `learn(pupil)` with what the search found."""

    def __init__(self) -> None:
        self.pupil_level: float | None = None
        self.iris_level: float | None = None
        self.skipped = 0  # frames skipped in a row
        self._small: GrayU8 | None = None
        self._scale = 1

    @property
    def contrast(self) -> float | None:
        """The learnt pupil-to-iris contrast on the shrunk, blurred frame (grey levels); None until learnt."""
        if self.pupil_level is None or self.iris_level is None:
            return None
        return self.iris_level - self.pupil_level

    @property
    def last_small(self) -> GrayU8 | None:
        """The last frame observed, shrunk and blurred."""
        return self._small

    def observe(self, gray: GrayU8) -> GrayU8:
        """The frame shrunk and blurred as the gate sees it; `learn` reads its levels from the last one observed."""
        small, self._scale = shrunk(gray, GATE_SIDE_PX)
        blurred = self._small = as_u8(cv2.blur(small, (PATCH_PX, PATCH_PX)))
        return blurred

    def allows(self, gray: GrayU8) -> bool:
        """Whether `gray` may hold a pupil (always, until levels are learnt)."""
        blurred = self.observe(gray)
        pupil, iris = self.pupil_level, self.iris_level
        if pupil is None or iris is None or iris - pupil < MIN_CONTRAST:
            self.skipped = 0
            return True
        darkest = float(blurred.min())
        if darkest <= pupil + DARK_FRACTION * (iris - pupil):
            self.skipped = 0
            return True
        self.skipped += 1
        return self.skipped % PROBE_EVERY == 0

    def learn(self, pupil: PupilResult) -> None:
        """Update the levels from a confident find in the frame last passed to `allows`."""
        small = self._small
        if small is None or pupil.confidence < LEARN_CONFIDENCE:
            return
        if self.skipped:
            # A probe found a clear pupil where the gate saw none (the light changed, or the pupil looks
            # lighter than the learnt one): the levels are wrong, so they start again from this find.
            self.pupil_level = self.iris_level = None
            self.skipped = 0
        scale = self._scale
        x, y = (pupil.x + 0.5) / scale - 0.5, (pupil.y + 0.5) / scale - 0.5
        radius = min(pupil.ellipse_w, pupil.ellipse_h) / 2.0 / scale
        height, width = small.shape
        # A few pixels of the shrunk, blurred frame (this runs on every confident frame): the pupil's centre,
        # and the iris on a ring around it.
        cx, cy = round(x), round(y)
        if not (0 <= cx < width and 0 <= cy < height):
            return
        ring_px = IRIS_RING_RADIUS * radius
        ring = [
            int(small[ry, rx])
            for dx, dy in RING_DIRECTIONS
            if 0 <= (rx := round(x + dx * ring_px)) < width and 0 <= (ry := round(y + dy * ring_px)) < height
        ]
        if len(ring) < MIN_RING_SAMPLES:
            return
        ring.sort()
        pupil_level, iris_level = float(small[cy, cx]), float(ring[len(ring) // 2])
        if self.pupil_level is None or self.iris_level is None:
            self.pupil_level, self.iris_level = pupil_level, iris_level
            return
        self.pupil_level += LEARN_RATE * (pupil_level - self.pupil_level)
        self.iris_level += LEARN_RATE * (iris_level - self.iris_level)
