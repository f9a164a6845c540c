"""PlanClock: the follower's plan time under speed scaling (UR's pendant slider).

Plan time advances at the scaling factor (0..1) per second of the caller's clock; at 1 it is the
caller's time itself. A chunk's stamp lies up to max_stamp_age_s in the past and the factor may have
changed since, so the clock keeps the lag (caller's time minus plan time) of every step of the last
LAG_HISTORY_S while the factor is below 1, and places a past stamp from that history. ROS-free;
used by follower.py (see "Speed scaling" there).
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from typing import Optional

LAG_HISTORY_S = 1.0   # how far back the plan time of a chunk's stamp is known exactly (s)


class PlanClock:
    def __init__(self) -> None:
        self.factor = 1.0               # plan seconds per second of the caller's clock
        self.last_now: Optional[float] = None   # the caller's time of the last advance()
        self._lag = 0.0     # caller's time minus plan time at last_now (factor < 1 at times)
        # (caller's time, lag) at each step since the factor was last below 1; empty while plan
        # time is the caller's time.
        self._times: deque = deque()
        self._lags: deque = deque()

    def reset(self, now: float) -> None:
        """Plan time is the caller's time from `now` on (the factor stays)."""
        self.last_now = now
        self._lag = 0.0
        self._times.clear()
        self._lags.clear()

    def set_factor(self, factor: float) -> None:
        """Clipped to [0, 1] (never faster than the policy planned); non-finite: ignored."""
        factor = float(factor)
        if math.isfinite(factor):
            self.factor = min(1.0, max(0.0, factor))

    def at(self, t: float) -> float:
        """Plan time at the caller's time t: after the last step, extrapolated at the current
        factor; before it, from the recorded history."""
        if self.last_now is None:
            return t - self._lag
        if t >= self.last_now or not self._times:
            return t - max(0.0, self._lag + (1.0 - self.factor) * (t - self.last_now))
        times, lags = self._times, self._lags
        i = bisect_left(times, t)
        if i == 0:
            return t - lags[0]
        t0, t1 = times[i - 1], times[i]
        l0, l1 = lags[i - 1], lags[i]
        return t - (l0 + (l1 - l0) * (t - t0) / (t1 - t0) if t1 > t0 else l1)

    def advance(self, now: float) -> float:
        """A control step at the caller's time `now`: returns its plan time and records it."""
        tau = self.at(now)
        lag = self._lag = now - tau
        self.last_now = now
        if lag == 0.0 and not self._times:
            return tau      # plan time is the caller's time: nothing to remember
        if self._times and now <= self._times[-1]:
            self._times.clear()
            self._lags.clear()
        self._times.append(now)
        self._lags.append(lag)
        while self._times and self._times[0] < now - LAG_HISTORY_S:
            self._times.popleft()
            self._lags.popleft()
        return tau
