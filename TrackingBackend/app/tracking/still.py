"""Still frames: a frame that shows what the last fully tracked frame showed, within noise, reuses its measurements.

A fixating eye in a steady headset gives runs of frames that differ only by sensor noise; tracking each of them
again finds the same pupil and lids (give or take the tracker's own jitter). Each frame is compared, shrunk and
blurred as the closed-eye gate sees it (app.tracking.pupil.gate), with the key frame: the last one tracked in full.
When no pixel differs by more than a small fraction of the learnt pupil-to-iris contrast, the pupil moved by well
under a pixel (and no lid moved): the key frame's pupil and lid measurements are taken again (the pipeline's lid
statistics and blink state still advance a frame, see app.tracking.pipeline), and nothing is searched or measured.

The threshold is relative to the contrast, so a faint pupil allows only as much movement as a crisp one, and it is
compared with the largest difference anywhere in the frame, so a noisy camera simply reuses nothing. Only a plainly
seen, confidently found pupil makes a key frame, and a key frame is reused at most MAX_REUSES times in a row.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

GrayU8 = npt.NDArray[np.uint8]

# A frame is still when no shrunk, blurred pixel differs from the key frame's by more than this fraction of the
# pupil-to-iris contrast. Tuned on the scripted virtual eye (900-frame sets, before the lids' settling was required):
# 0.05 reused 33 % of `bench90`'s frames with every within-1/2-px rate unchanged and the median error 0.037 -> 0.055 px;
# 0.08 reused 46 % but let slow lid movements through (default set's openness error 0.066 -> 0.120); 0.03 reused 16 %.
# Once the lids are learnt, 0.05 reuses 22 % of the `bench90` loop (24 % of its consecutive frames show the pupil
# moved under 0.1 px).
STILL_CONTRAST_FRACTION = 0.05
# A key frame serves at most this many frames in a row (at 90 fps, a full track at least every 100 ms).
MAX_REUSES = 8


class StillFrames:
    """`still(small, contrast)` before tracking a frame; `keep(small)` after a frame tracked in full made a key frame
    (or `forget()` when it did not)."""

    def __init__(self) -> None:
        self._key: GrayU8 | None = None
        self._reuses = 0
        self.reused = 0  # frames that reused a key frame's result, in all

    def still(self, small: GrayU8, contrast: float | None) -> bool:
        key = self._key
        if key is None or contrast is None or self._reuses >= MAX_REUSES or key.shape != small.shape:
            return False
        _, largest, _, _ = cv2.minMaxLoc(cv2.absdiff(small, key))
        if largest > STILL_CONTRAST_FRACTION * contrast:
            return False
        self._reuses += 1
        self.reused += 1
        return True

    def keep(self, small: GrayU8) -> None:
        self._key = small
        self._reuses = 0

    def forget(self) -> None:
        self._key = None
