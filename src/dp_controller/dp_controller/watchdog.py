"""Chunk watchdog: trips when no valid chunk was accepted for `timeout_s` (ROS-free).

The follower asks `expired(now)` every control period while following; on a trip it stops
following and brakes within the limits (limits.Limiter.brake) until it holds position.
"""
from __future__ import annotations

import math


class Watchdog:
    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self.last_feed = math.nan
        self.armed = False
        self.trips = 0

    def feed(self, now: float):
        self.last_feed = now
        self.armed = True

    def disarm(self):
        self.armed = False

    def since_last(self, now: float) -> float:
        return now - self.last_feed

    def expired(self, now: float) -> bool:
        """True (and counts a trip) once `timeout_s` passed since the last feed."""
        if not self.armed or now - self.last_feed <= self.timeout_s:
            return False
        self.trips += 1
        self.armed = False
        return True
