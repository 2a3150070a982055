"""OSC encoding (pure): address + float arguments -> datagram bytes.

Hand-rolled because every datagram here is one address with float arguments (never a bundle: the
VRCFT module cannot parse bundles): the padded address and type tags are encoded once per address
(`osc_header`), so encoding a message is one struct.pack and a concatenation. The tests check every
datagram against python-osc's parser.
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache

FLOAT = struct.Struct(">f")


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (4 - len(data) % 4)


@lru_cache(maxsize=1024)
def osc_header(address: str, arg_count: int) -> bytes:
    """The padded address and type tags of a message with `arg_count` float arguments."""
    return _pad(address.encode("ascii")) + _pad(b"," + b"f" * arg_count)


@lru_cache(maxsize=16)
def _floats(count: int) -> struct.Struct:
    return struct.Struct(f">{count}f")


def clamp(value: float, low: float, high: float) -> float:
    """Clamp into [low, high]; NaN (never sent) becomes the range's middle."""
    if math.isnan(value):
        return (low + high) / 2.0
    return low if value < low else high if value > high else value


def encode_float(address: str, value: float) -> bytes:
    return osc_header(address, 1) + FLOAT.pack(value)


def encode_floats(address: str, values: tuple[float, ...] | list[float]) -> bytes:
    return osc_header(address, len(values)) + _floats(len(values)).pack(*values)
