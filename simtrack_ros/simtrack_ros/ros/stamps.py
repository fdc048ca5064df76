"""ROS time stamps as integer nanoseconds (the key of frames, requests and ground truth)."""
from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def to_nanoseconds(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (anything with ``sec`` and ``nanosec``)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def format_stamp(stamp_ns: int) -> str:
    """``sec.nanosec`` text of a stamp in nanoseconds."""
    return f'{stamp_ns // NS_PER_S}.{stamp_ns % NS_PER_S:09d}'
