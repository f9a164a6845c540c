"""Per-joint command limiter: position, velocity and acceleration bounds hold on every output.

ROS-free, numpy only. `Limiter.step(target_next, target_now)` moves the command state (q, v) one
control period dt towards a target and guarantees, whatever the target (NaN included):

    |v_new| <= vmax,  |v_new - v| <= amax * dt,  lower <= q_new <= upper

given a start state inside the limits. A start outside the position limits (an arm parked between
the configured limits and the hardware's) is taken as it is, not clipped (that would be a step of
up to the margin): the joint holds there or moves inward within vmax and amax, never further out,
and once inside stays inside. One exception: a reset with a velocity pointing out of the limits
from outside them (a tracking fault restarts from the arm's measured state) is braked at amax,
not cut to zero (a step in velocity), so the joint goes on outward by up to v^2 / (2 amax). The position bound is braking-distance aware: v_new is
also bounded so that the joint can still stop before the limit at amax,
``q + v_new*dt + v_new**2 / (2*amax) <= upper``; this set is invariant under full braking, so
the bounds above can always be met together (see the tests for the proof by property).

Tracking law: feed-forward of the target's own step plus a correction that closes the error
exactly when it is small (|e| / dt) and otherwise at the braking-feasible speed
sqrt(2 * amax_c * |e|), so that large errors close without overshoot.

Implementation: plain Python floats in a loop over the joints. For a handful of joints that is
several times cheaper than ~40 numpy operations on tiny arrays, and this runs 500 times a second.
The state is kept as lists of floats, and `step`/`brake` return lists: the 500 Hz path (targets in,
a Float64MultiArray out) never builds an array; `q`, `v`, `a` and `copy_state()` give arrays.
The largest |jerk| of the steps and the sum of their squares since `pop_jerk()` are kept on the
way (rad/s^3, each step's jerk on its own length).

Not here: where targets come from (plan.py, follower.py).
"""
from __future__ import annotations

import math

import numpy as np


class Limiter:
    def __init__(self, lower, upper, vmax, amax, dt: float, correction_accel_fraction: float = 0.5):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.vmax = np.asarray(vmax, dtype=np.float64)
        self.amax = np.asarray(amax, dtype=np.float64)
        self.dt = float(dt)
        self.a_corr = correction_accel_fraction * self.amax
        # Per-joint constants as Python floats for the loop (for the nominal period, and the last
        # other period a step was asked for: see `step(..., dt=)`).
        self._joints = self._cur = self._constants(self.dt)
        self._other = (None, None)
        self.max_abs_jerk = 0.0
        self.jerk_sq_sum, self.jerk_count = 0.0, 0     # sum of jerk^2 (rad^2/s^6), its terms
        self.reset(np.clip(np.zeros_like(self.lower), self.lower, self.upper))

    def _constants(self, dt: float) -> list:
        return [(lo, up, vm, am * dt, (am * dt) ** 2, 2.0 * am, 2.0 * ac)
                for lo, up, vm, am, ac in zip(self.lower.tolist(), self.upper.tolist(),
                                              self.vmax.tolist(), self.amax.tolist(),
                                              self.a_corr.tolist())]

    def _use(self, dt) -> float:
        """Select the per-joint constants of step length dt (None: the nominal period)."""
        if dt is None or dt == self.dt:
            self._cur = self._joints
            return self.dt
        if self._other[0] != dt:
            self._other = (dt, self._constants(dt))
        self._cur = self._other[1]
        return dt

    def reset(self, q, v=None):
        """Start from position q (as it is, even outside the limits: see the module docstring)
        at velocity v (default 0, clipped to vmax)."""
        q = np.asarray(q, dtype=np.float64).copy()
        v = np.zeros_like(q) if v is None else np.clip(
            np.asarray(v, dtype=np.float64), -self.vmax, self.vmax)
        self.set_state((q, v, np.zeros_like(q)))

    @property
    def q(self) -> np.ndarray:
        """Commanded positions (rad), a new array."""
        return np.array(self._q)

    @property
    def v(self) -> np.ndarray:
        """Commanded velocities (rad/s), a new array."""
        return np.array(self._v)

    @property
    def a(self) -> np.ndarray:
        """Accelerations of the last step (rad/s^2), a new array."""
        return np.array(self._a)

    def copy_state(self):
        """(q, v, a) as new arrays."""
        return self.q, self.v, self.a

    def last_step(self):
        """(q, v, a) of the last step as lists of floats (not to be changed by the caller)."""
        return self._q, self._v, self._a

    def set_state(self, state):
        self._q, self._v, self._a = (np.asarray(s, dtype=np.float64).tolist() for s in state)

    def pop_max_jerk(self) -> float:
        """Max |jerk| (rad/s^3) over the joints and the steps since the last call; resets it."""
        j, self.max_abs_jerk = self.max_abs_jerk, 0.0
        return j

    def pop_jerk(self) -> tuple[float, float, int]:
        """(max |jerk|, RMS jerk (rad/s^3), number of terms) over the joints and the steps since
        the last call, each step's jerk on its own length (the command's own times); resets them
        (RMS NaN without a step)."""
        n, sq = self.jerk_count, self.jerk_sq_sum
        self.jerk_sq_sum, self.jerk_count = 0.0, 0
        return self.pop_max_jerk(), (math.sqrt(sq / n) if n else math.nan), n

    def _bounds(self, j, q, v):
        lower, upper, vmax, adt, adt2, two_a, _ = self._cur[j]
        room_up = upper - q
        room_lo = q - lower
        hi = min(v + adt, vmax, math.sqrt(adt2 + two_a * (room_up if room_up > 0.0 else 0.0)) - adt)
        lo = max(v - adt, -vmax, adt - math.sqrt(adt2 + two_a * (room_lo if room_lo > 0.0 else 0.0)))
        # Inside the invariant set lo <= hi always; guard rounding by keeping the acceleration bound.
        if lo > v + adt:
            lo = v + adt
        if hi < v - adt:
            hi = v - adt
        return lo, hi

    def _advance(self, v_des, dt: float):
        """One step of length dt with desired velocities v_des (list; non-finite -> brake)."""
        qs, vs, acc = [], [], []
        jerk = self.max_abs_jerk * dt
        sq = 0.0
        for j, (q, v, vd, a) in enumerate(zip(self._q, self._v, v_des, self._a)):
            if not math.isfinite(vd):
                vd = 0.0
            lo, hi = self._bounds(j, q, v)
            vn = hi if vd > hi else (lo if vd < lo else vd)
            qn = q + vn * dt
            # Rounding guard only (the bounds above already keep qn inside). Outside the limits
            # the bounds allow no outward speed, beyond the deceleration of an outward velocity
            # a reset gave (at amax: never a step).
            lower, upper = self._cur[j][0], self._cur[j][1]
            if qn > upper and q <= upper:
                qn = upper
            elif qn < lower and q >= lower:
                qn = lower
            an = (vn - v) / dt
            da = an - a
            sq += da * da
            if abs(da) > jerk:
                jerk = abs(da)
            qs.append(qn)
            vs.append(vn)
            acc.append(an)
        self._q, self._v, self._a = qs, vs, acc
        self.max_abs_jerk = jerk / dt
        self.jerk_sq_sum += sq / (dt * dt)
        self.jerk_count += len(qs)
        return qs, vs, acc

    def desired_velocity(self, target_next, target_now, dt: float):
        """Velocity that tracks the target: feed-forward + braking-feasible error correction.
        Targets: sequences of floats (lists on the hot path)."""
        out = []
        for j, (tn, tw, q) in enumerate(zip(target_next, target_now, self._q)):
            e = tw - q
            ae = abs(e)
            corr = min(ae / dt, math.sqrt(self._cur[j][6] * ae)) if ae == ae else math.nan
            out.append((tn - tw) / dt + (corr if e >= 0.0 else -corr))
        return out

    def step(self, target_next, target_now, dt: float | None = None):
        """Track the target: target_now is its value now, target_next one step ahead. `dt`: the
        step's length when it is not the nominal period (the follower's plan time under speed
        scaling); the limits then hold per unit of that time."""
        dt = self._use(dt)
        return self._advance(self.desired_velocity(target_next, target_now, dt), dt)

    def brake(self, dt: float | None = None):
        """Decelerate at the limit towards zero velocity (then hold)."""
        dt = self._use(dt)
        return self._advance([0.0] * len(self._q), dt)


def braking_profile(q, v, amax, dt: float):
    """Every joint brakes from (q, v) at its own acceleration limit to a standstill, sampled for
    a trajectory controller that interpolates positions and velocities (cubic Hermite).

    Returns (t (K,), positions (K, J), velocities (K, J)): t from 0 (exclusive) in steps of dt to
    T = max_j |v_j| / amax_j (the last sample, where every velocity is exactly 0). Samples are
    the continuous constant-deceleration motion q + v t - sign(v) amax t^2 / 2 (held once the
    joint has stopped), so the controller's cubic between two samples is that parabola, the
    deceleration never exceeds amax and no joint goes further than its braking distance
    v^2 / (2 amax); Limiter's braking-distance bound keeps that inside the position limits.
    Only the segment in which a joint stops differs from the parabola (it overshoots the stop
    by less than amax * dt^2 / 50, 1e-4 rad at 10 rad/s^2 and 20 ms). At rest: one sample at dt.
    """
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    amax = np.broadcast_to(np.asarray(amax, dtype=np.float64), q.shape)
    t_stop = np.abs(v) / amax                       # (J,) each joint's own stopping time
    total = float(np.max(t_stop)) if q.size else 0.0
    n = max(1, int(math.ceil(total / dt - 1e-9)))
    t = np.minimum(np.arange(1, n + 1) * dt, max(total, dt))
    t[-1] = max(total, dt)
    tj = np.minimum(t[:, None], t_stop[None, :])    # (K, J) time spent braking
    decel = -np.sign(v) * amax
    pos = q + v * tj + 0.5 * decel * tj ** 2
    vel = v + decel * tj
    vel[t[:, None] >= t_stop[None, :]] = 0.0        # exactly zero once stopped
    return t, pos, vel
