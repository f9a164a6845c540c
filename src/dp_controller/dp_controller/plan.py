"""The time-indexed plan: chunk splines entered at "now", and temporal ensembles.

ROS-free, numpy only. A plan is anything with `evaluate(t) -> (p, v, a)` (each (J,)),
`position(t) -> p` (the same p, cheaper) and `simplify(t) -> plan` (drops parts that no longer
matter after time t):

- `enter_chunk` builds the spline of one chunk: an entry knot at `t_enter` carrying the current
  plan state (position, velocity, acceleration: C2 at the switch) followed by the chunk's points
  that are still ahead. Points in the past are skipped (latency compensation), and so are points
  closer to `t_enter` than the blend gap: max(blend window, half a chunk step, one period). The
  first quintic segment is therefore a C2 bridge that blends the current motion into the new
  chunk over at least the blend window (the peak jerk of a bridge over an offset d scales as
  d / T^3, so a longer window is smoother; a cross-fade shorter than the bridge would only
  steepen it).
- `Ensemble` is ACT-style temporal ensembling: a weighted mean over the overlapping chunk splines,
  weight exp(-decay * i) for the i-th newer chunk, each faded in (and, except the newest, faded
  out at its end) with a quintic smoothstep so that the mean never jumps.

Not here: validation of chunks and the switching policy (follower.py), limits (limits.py).
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Optional

import numpy as np

from dp_controller.spline import QuinticSpline, estimate_derivatives


def smoothstep5(x: float):
    """Quintic smoothstep s(x) on [0, 1] and its first two derivatives (zero at both ends)."""
    if x <= 0.0:
        return 0.0, 0.0, 0.0
    if x >= 1.0:
        return 1.0, 0.0, 0.0
    s = x * x * x * (10.0 + x * (-15.0 + 6.0 * x))
    ds = 30.0 * x * x * (1.0 - x) ** 2
    dds = 60.0 * x * (1.0 - x) * (1.0 - 2.0 * x)
    return s, ds, dds


class HoldPlan:
    """Constant position, zero velocity and acceleration."""

    def __init__(self, p: np.ndarray):
        self.p = np.array(p, dtype=np.float64)
        self.zeros = np.zeros_like(self.p)

    def evaluate(self, t: float):
        return self.p, self.zeros, self.zeros

    def position(self, t: float):
        return self.p

    def simplify(self, t: float):
        return self


class SplinePlan:
    """One chunk's spline (see enter_chunk)."""

    def __init__(self, spline: QuinticSpline):
        self.spline = spline

    def evaluate(self, t: float):
        return self.spline.evaluate(t)

    def position(self, t: float):
        return self.spline.position(t)

    def simplify(self, t: float):
        return self

    @property
    def t_end(self) -> float:
        return self.spline.t_end


def enter_chunk(t_abs: np.ndarray, pos: np.ndarray, vel: Optional[np.ndarray], t_enter: float,
                entry_state, min_gap_s: float = 0.0) -> Optional[SplinePlan]:
    """Spline from the entry state at t_enter through the chunk points still ahead; None if none.

    t_abs: (N,) absolute times of the chunk points; pos (N, J); vel (N, J) or None.
    entry_state: (p, v, a) of the current plan at t_enter.
    min_gap_s: points before t_enter + gap are skipped, gap = max(min_gap_s, half the median
    chunk step): the entry segment (the blend) lasts at least that long. When only the last
    point is still ahead but inside the gap, the plan ends there at t_enter + gap (at rest).
    """
    gap = min_gap_s
    if t_abs.shape[0] >= 2:
        gap = max(gap, 0.5 * float(np.median(np.diff(t_abs))))
    keep = t_abs > t_enter + gap
    p0, v0, a0 = entry_state
    if not np.any(keep):
        if t_abs[-1] <= t_enter:
            return None
        t = np.array([t_enter, t_enter + max(gap, 1e-6)])
        p = np.stack([p0, pos[-1]])
        v, a = estimate_derivatives(t, p, np.stack([v0, np.zeros_like(v0)]), v0=v0, a0=a0)
        return SplinePlan(QuinticSpline(t, p, v, a))
    t = np.concatenate([[t_enter], t_abs[keep]])
    p = np.concatenate([p0[None], pos[keep]], axis=0)
    v = None if vel is None else np.concatenate([v0[None], vel[keep]], axis=0)
    v, a = estimate_derivatives(t, p, v, v0=v0, a0=a0)
    return SplinePlan(QuinticSpline(t, p, v, a))


class Ensemble:
    """ACT-style temporal ensemble of chunk splines with faded weights (see module docstring)."""

    def __init__(self, decay: float, fade_s: float, max_members: int):
        self.decay, self.fade, self.max_members = decay, fade_s, max_members
        self.members = []   # [(plan, index, t_in, t_end)] oldest first
        self._count = 0
        self._packed = None

    def add(self, plan: SplinePlan, t_in: float):
        self.members.append((plan, self._count, t_in, plan.t_end))
        self._count += 1
        if len(self.members) > self.max_members:
            self.members.pop(0)
        self._packed = None

    def _pack(self):
        """Per member, its weight parameters and its spline as rows of one stacked array, for one
        batched evaluation per control period (with ~16 overlapping chunks, evaluating them one by
        one was most of the follower's step). Rebuilt when members are added or dropped."""
        coefs, packed, base = [], [], 0
        first = self.members[0][1]
        last = len(self.members) - 1
        for k, (plan, idx, t_in, t_end) in enumerate(self.members):
            coef, knots, ref = plan.spline.rows()
            coefs.append(coef)
            packed.append((plan, base, knots, ref, math.exp(-self.decay * (idx - first)), t_in,
                           t_end if k != last else math.inf))   # the newest is not faded out
            base += coef.shape[0]
        self._packed = np.concatenate(coefs), packed
        return self._packed

    def _fade(self, x: float) -> float:
        """smoothstep5(x / fade)[0] without the derivatives (hot path)."""
        if self.fade <= 0:
            return 1.0
        x /= self.fade
        if x <= 0.0:
            return 0.0
        return 1.0 if x >= 1.0 else x * x * x * (10.0 + x * (-15.0 + 6.0 * x))

    def _weight(self, w0: float, t_in: float, t_end: float, t: float) -> float:
        """exp(-decay * i) weight, faded in after t_in and (except the newest) out before t_end."""
        w = w0 * self._fade(t - t_in)
        return w * self._fade(t_end - t) if t_end != math.inf else w

    def _weights(self, t: float):
        _, packed = self._packed or self._pack()
        out = []
        for plan, _, _, _, w0, t_in, t_end in packed:
            w = self._weight(w0, t_in, t_end, t)
            if w > 0.0:
                out.append((w, plan))
        return out

    def evaluate(self, t: float):
        weighted = self._weights(t)
        if not weighted:   # only the newest fading in from an older one that ended: use the newest
            return self.members[-1][0].evaluate(t)
        total = sum(w for w, _ in weighted)
        p = v = a = 0.0
        for w, plan in weighted:
            pi, vi, ai = plan.evaluate(t)
            p = p + w * pi
            v = v + w * vi
            a = a + w * ai
        return p / total, v / total, a / total

    def position(self, t: float):
        """The same value as evaluate(t)[0], all members in one batched polynomial evaluation:
        Python floats for the per-member bookkeeping, one product for the polynomials."""
        coef, packed = self._packed or self._pack()
        weight = self._weight
        rows, wx = [], []
        total = 0.0
        for _, base, knots, ref, w0, t_in, t_end in packed:
            w = weight(w0, t_in, t_end, t)
            if w <= 0.0:
                continue
            i = bisect_right(knots, t)
            x = t - ref[i]
            x2 = x * x
            rows.append(base + i)
            wx += (w, w * x, w * x2, w * x2 * x, w * x2 * x2, w * x2 * x2 * x)
            total += w
        if total <= 0.0:   # only the newest fading in from an older one that ended: use the newest
            return self.members[-1][0].position(t)
        return (np.array(wx) @ coef[rows].reshape(-1, coef.shape[2])) / total

    def simplify(self, t: float):
        kept = [m for i, m in enumerate(self.members) if i == len(self.members) - 1 or m[3] > t]
        if len(kept) != len(self.members):
            self.members = kept
            self._packed = None
        return self
