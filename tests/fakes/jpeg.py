"""Real JPEG frames for tests and benchmarks, made with OpenCV (no files needed).

Each frame carries its index as a 12-bit bar code in its top rows, so a test can tell which frame a
source delivered even after JPEG compression.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

INDEX_BITS = 12
_BAR_ROWS = 12


def eye_like_image(index: int = 0, width: int = 240, height: int = 240) -> npt.NDArray[np.uint8]:
    """A grey frame with noise, a dark pupil-like disc and the bar code of `index`."""
    rng = np.random.default_rng(index)
    image = (rng.integers(0, 20, size=(height, width), dtype=np.uint8) + 140).astype(np.uint8)
    cx = width // 4 + (index * 7) % max(1, width // 2)
    cv2.circle(image, (cx, height // 2), max(3, min(width, height) // 10), 20, thickness=-1)
    bar_w = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        image[:_BAR_ROWS, bit * bar_w : (bit + 1) * bar_w] = value
    return image


def frame_index_of(gray: npt.NDArray[np.uint8]) -> int:
    """The index drawn by `eye_like_image` (modulo 2**INDEX_BITS)."""
    bar_w = gray.shape[1] // INDEX_BITS
    index = 0
    for bit in range(INDEX_BITS):
        margin = max(1, bar_w // 4)  # stay clear of JPEG ringing at the block edges
        block = gray[2 : _BAR_ROWS - 2, bit * bar_w + margin : (bit + 1) * bar_w - margin]
        if float(block.mean()) > 128:
            index |= 1 << bit
    return index


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return bytes(buf.tobytes())


def make_jpegs(count: int, width: int = 240, height: int = 240, quality: int = 80) -> list[bytes]:
    return [encode_jpeg(eye_like_image(i, width, height), quality) for i in range(count)]
