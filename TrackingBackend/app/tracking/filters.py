"""One-Euro filter (Casiez et al. 2012): low lag when the signal moves, smooth when it rests."""

from __future__ import annotations

import math


def _alpha(cutoff_hz: float, dt_s: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Filters one scalar; `ts` in seconds. A repeated or backwards timestamp returns the last output."""

    def __init__(self, min_cutoff_hz: float = 1.0, beta: float = 0.5, d_cutoff_hz: float = 1.0) -> None:
        self.min_cutoff_hz = min_cutoff_hz
        self.beta = beta
        self.d_cutoff_hz = d_cutoff_hz
        self._value: float | None = None
        self._derivative = 0.0
        self._ts = 0.0

    def reset(self) -> None:
        self._value = None
        self._derivative = 0.0

    def __call__(self, value: float, ts: float) -> float:
        if self._value is None:
            self._value, self._ts = value, ts
            return value
        dt_s = ts - self._ts
        if dt_s <= 0.0:
            return self._value
        self._ts = ts
        derivative = (value - self._value) / dt_s
        self._derivative += _alpha(self.d_cutoff_hz, dt_s) * (derivative - self._derivative)
        cutoff_hz = self.min_cutoff_hz + self.beta * abs(self._derivative)
        self._value += _alpha(cutoff_hz, dt_s) * (value - self._value)
        return self._value
