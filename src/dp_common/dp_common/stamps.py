"""Conversions between ROS time stamps and numbers (float seconds, integer nanoseconds).

Works on anything with `.sec` and `.nanosec` (builtin_interfaces/Time and Duration from rclpy,
the dataclasses `rosbags` deserializes) and on rclpy.time.Time (`.nanoseconds`). ROS-free at
import: `sec_to_stamp` / `ns_to_stamp` import builtin_interfaces lazily.

Float seconds lose precision below ~100 ns at current Unix times (2**-22 s at 1.7e9 s); code
that sorts or compares stamps exactly should use the nanosecond variants.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ['stamp_to_ns', 'stamp_to_sec', 'ns_to_stamp', 'sec_to_stamp', 'sec_to_ns',
           'sec_to_sec_nanosec', 'is_zero_stamp']

_NS = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """Time/Duration (.sec, .nanosec) or rclpy Time (.nanoseconds) -> int nanoseconds."""
    if hasattr(stamp, 'sec') and hasattr(stamp, 'nanosec'):
        return int(stamp.sec) * _NS + int(stamp.nanosec)
    if hasattr(stamp, 'nanoseconds'):
        return int(stamp.nanoseconds)
    raise TypeError(f'not a time stamp: {type(stamp).__name__} (needs .sec/.nanosec or .nanoseconds)')


def stamp_to_sec(stamp: Any) -> float:
    """Time/Duration (.sec, .nanosec) or rclpy Time -> float seconds."""
    if hasattr(stamp, 'sec') and hasattr(stamp, 'nanosec'):
        return float(stamp.sec) + float(stamp.nanosec) * 1e-9
    return stamp_to_ns(stamp) * 1e-9


def sec_to_ns(t: float) -> int:
    """Float seconds -> int nanoseconds (rounded to nearest)."""
    if not math.isfinite(t):
        raise ValueError(f'time must be finite, got {t}')
    return int(round(float(t) * 1e9))


def sec_to_sec_nanosec(t: float) -> tuple[int, int]:
    """Float seconds -> (sec, nanosec) with 0 <= nanosec < 1e9 (also for negative t): the fields
    of a builtin_interfaces Time or Duration."""
    return divmod(sec_to_ns(t), _NS)


def ns_to_stamp(ns: int):
    """Int nanoseconds -> builtin_interfaces.msg.Time (0 <= nanosec < 1e9, also for negatives)."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), _NS)
    return Time(sec=int(sec), nanosec=int(nanosec))


def sec_to_stamp(t: float):
    """Float seconds -> builtin_interfaces.msg.Time."""
    return ns_to_stamp(sec_to_ns(t))


def is_zero_stamp(stamp: Any) -> bool:
    """True for the all-zero stamp (a JointTrajectory's "start now", an unset header)."""
    return stamp_to_ns(stamp) == 0
