"""Piecewise quintic Hermite splines through joint-space knots (C2: position, velocity, acceleration).

ROS-free, numpy only. `QuinticSpline` interpolates knots given with position, velocity and
acceleration; `estimate_derivatives` supplies velocities/accelerations for knots that only carry
positions (three-point finite differences on a non-uniform grid). Before its first knot a spline
extrapolates the first knot's state to second order (so that a plan entered at "now" can be
differenced over the previous control period); after its last knot it holds the last position with zero velocity
and acceleration (the limiter in limits.py turns that step in velocity into a feasible stop).

Not here: limits (limits.py) and the choice of knots from chunks (plan.py).
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Optional

import numpy as np


def estimate_derivatives(t: np.ndarray, p: np.ndarray, v: Optional[np.ndarray] = None,
                         v0: Optional[np.ndarray] = None, a0: Optional[np.ndarray] = None):
    """Velocities and accelerations at knots t (K,) with positions p (K, J).

    Interior knots: weighted three-point differences. Knot 0 takes v0/a0 when given (the state
    the plan is entered from). The last knot keeps the slope of its last segment and zero
    acceleration. Given velocities `v` (K, J) are used as they are.
    """
    k = t.shape[0]
    vel = np.zeros_like(p) if v is None else np.array(v, dtype=np.float64)
    acc = np.zeros_like(p)
    if k >= 2:
        h = np.diff(t)[:, None]                      # (K-1, 1)
        slope = np.diff(p, axis=0) / h               # (K-1, J)
        if v is None:
            vel[0] = slope[0]
            vel[-1] = slope[-1]
        if k >= 3:
            hl, hr = h[:-1], h[1:]                   # (K-2, 1)
            if v is None:
                vel[1:-1] = (slope[:-1] * hr + slope[1:] * hl) / (hl + hr)
            acc[1:-1] = 2.0 * (slope[1:] - slope[:-1]) / (hl + hr)
    if v0 is not None:
        vel[0] = v0
    if a0 is not None:
        acc[0] = a0
    return vel, acc


class QuinticSpline:
    """C2 piecewise quintic through knots (t (K,), p/v/a (K, J)); evaluate(t) -> (p, v, a)."""

    def __init__(self, t: np.ndarray, p: np.ndarray, v: np.ndarray, a: np.ndarray):
        t = np.asarray(t, dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        if t.ndim != 1 or p.shape[0] != t.shape[0] or t.shape[0] < 1:
            raise ValueError('need K >= 1 knots with matching shapes')
        if t.shape[0] > 1 and np.any(np.diff(t) <= 0):
            raise ValueError('knot times must increase strictly')
        self.t = t
        self._t_list = t.tolist()   # bisect on a list: cheaper than np.searchsorted per call
        self.p_first, self.v_first, self.a_first = p[0].copy(), np.array(v[0]), np.array(a[0])
        self.p_last = p[-1].copy()
        self.zeros = np.zeros_like(p[0])
        if t.shape[0] == 1:
            self.coef = np.zeros((0, 6, p.shape[1]))
            return
        h = np.diff(t)[:, None]                                   # (S, 1)
        p0, p1, v0, v1, a0, a1 = p[:-1], p[1:], v[:-1], v[1:], a[:-1], a[1:]
        dp = p1 - p0                                              # (S, J)
        c3 = (20 * dp - (8 * v1 + 12 * v0) * h - (3 * a0 - a1) * h**2) / (2 * h**3)
        c4 = (-30 * dp + (14 * v1 + 16 * v0) * h + (3 * a0 - 2 * a1) * h**2) / (2 * h**4)
        c5 = (12 * dp - 6 * (v1 + v0) * h - (a0 - a1) * h**2) / (2 * h**5)
        self.coef = np.ascontiguousarray(np.stack([p0, v0, 0.5 * a0, c3, c4, c5], axis=1))  # (S, 6, J)

    def rows(self) -> tuple[np.ndarray, list[float], list[float]]:
        """The spline as S + 2 polynomial rows for batched evaluation (plan.Ensemble.position).

        Returns (coef (S + 2, 6, J), knot times (S + 1,) list, ref (S + 2,) list): with
        i = bisect_right(knot times, t), the
        position at t is sum_k coef[i, k] * (t - ref[i])**k. Row 0 is the second-order extrapolation
        before the first knot, rows 1..S the segments, row S + 1 the hold after the last knot: the
        same cases, in the same order, as ``position``.
        """
        j = self.p_first.shape[0]
        before = np.zeros((1, 6, j))
        before[0, 0], before[0, 1], before[0, 2] = self.p_first, self.v_first, 0.5 * self.a_first
        after = np.zeros((1, 6, j))
        after[0, 0] = self.p_last
        ref = [self._t_list[0]] + self._t_list
        return np.concatenate([before, self.coef, after]), self._t_list, ref

    @property
    def t_start(self) -> float:
        return float(self.t[0])

    @property
    def t_end(self) -> float:
        return float(self.t[-1])

    def position(self, t: float) -> np.ndarray:
        """Position (J,) at time t (the control loop's hot path: no derivatives)."""
        tl = self._t_list
        if t <= tl[0]:
            x = t - tl[0]
            return self.p_first + x * (self.v_first + 0.5 * x * self.a_first)
        if t >= tl[-1]:
            return self.p_last
        i = bisect_right(tl, t) - 1
        x = t - tl[i]
        x2 = x * x
        return np.array((1.0, x, x2, x2 * x, x2 * x2, x2 * x2 * x)) @ self.coef[i]

    def evaluate(self, t: float):
        """State at time t: (position (J,), velocity (J,), acceleration (J,))."""
        tl = self._t_list
        if t <= tl[0]:
            x = t - tl[0]   # second-order extrapolation backwards from the entry state
            return (self.p_first + x * (self.v_first + 0.5 * x * self.a_first),
                    self.v_first + x * self.a_first, self.a_first)
        if t >= tl[-1]:
            return self.p_last, self.zeros, self.zeros
        i = bisect_right(tl, t) - 1
        x = t - tl[i]
        x2 = x * x
        x3 = x2 * x
        # One small matrix product instead of ~25 numpy operations (the 500 Hz loop's hot spot).
        basis = np.array(((1.0, x, x2, x3, x3 * x, x3 * x2),
                          (0.0, 1.0, 2.0 * x, 3.0 * x2, 4.0 * x3, 5.0 * x3 * x),
                          (0.0, 0.0, 2.0, 6.0 * x, 12.0 * x2, 20.0 * x3)))
        out = basis @ self.coef[i]                                # (3, J)
        return out[0], out[1], out[2]
