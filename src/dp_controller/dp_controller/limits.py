"""Per-joint command limiter: position, velocity and acceleration bounds hold on every output.

ROS-free, numpy only. `Limiter.step(target_next, target_now)` moves the command state (q, v) one
control period dt towards a target and guarantees, whatever the target (NaN included):

    |v_new| <= vmax,  |v_new - v| <= amax * dt,  lower <= q_new <= upper

given a start state inside the limits. The position bound is braking-distance aware: v_new is
also bounded so that the joint can still stop before the limit at amax,
``q + v_new*dt + v_new**2 / (2*amax) <= upper``; this set is invariant under full braking, so
the bounds above can always be met together (see the tests for the proof by property).

Tracking law: feed-forward of the target's own step plus a correction that closes the error
exactly when it is small (|e| / dt) and otherwise at the braking-feasible speed
sqrt(2 * amax_c * |e|), so that large errors close without overshoot.

Not here: where targets come from (plan.py, follower.py).
"""
from __future__ import annotations

import numpy as np


class Limiter:
    def __init__(self, lower, upper, vmax, amax, dt: float, correction_accel_fraction: float = 0.5):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.vmax = np.asarray(vmax, dtype=np.float64)
        self.amax = np.asarray(amax, dtype=np.float64)
        self.dt = float(dt)
        self.a_corr = correction_accel_fraction * self.amax
        self.q = np.zeros_like(self.lower)
        self.v = np.zeros_like(self.lower)
        self.a = np.zeros_like(self.lower)

    def reset(self, q, v=None):
        """Start from position q (clipped into the limits) at velocity v (default 0, clipped)."""
        self.q = np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)
        self.v = np.zeros_like(self.q) if v is None else np.clip(
            np.asarray(v, dtype=np.float64), -self.vmax, self.vmax)
        self.a = np.zeros_like(self.q)

    def copy_state(self):
        return self.q.copy(), self.v.copy(), self.a.copy()

    def set_state(self, state):
        self.q, self.v, self.a = (s.copy() for s in state)

    def velocity_bounds(self):
        """Bounds on the next velocity from vmax, amax and braking distance to the limits."""
        dt, amax = self.dt, self.amax
        adt = amax * dt
        room_up = np.maximum(self.upper - self.q, 0.0)
        room_lo = np.maximum(self.q - self.lower, 0.0)
        v_hi_brake = -adt + np.sqrt(adt * adt + 2.0 * amax * room_up)
        v_lo_brake = adt - np.sqrt(adt * adt + 2.0 * amax * room_lo)
        hi = np.minimum(np.minimum(self.v + adt, self.vmax), v_hi_brake)
        lo = np.maximum(np.maximum(self.v - adt, -self.vmax), v_lo_brake)
        # Inside the invariant set lo <= hi always; guard rounding by keeping the acceleration bound.
        lo = np.minimum(lo, self.v + adt)
        hi = np.maximum(hi, self.v - adt)
        return lo, hi

    def desired_velocity(self, target_next, target_now):
        """Velocity that tracks the target: feed-forward + braking-feasible error correction."""
        dt = self.dt
        v_ff = (target_next - target_now) / dt
        e = target_now - self.q
        ae = np.abs(e)
        corr = np.sign(e) * np.minimum(ae / dt, np.sqrt(2.0 * self.a_corr * ae))
        return v_ff + corr

    def step_velocity(self, v_des):
        """Advance one period with desired velocity v_des (NaN -> brake); returns (q, v, a)."""
        v_des = np.where(np.isfinite(v_des), v_des, 0.0)
        lo, hi = self.velocity_bounds()
        v_new = np.minimum(np.maximum(v_des, lo), hi)
        q_new = self.q + v_new * self.dt
        # Rounding guard only (the bounds above already keep q_new inside).
        q_new = np.minimum(np.maximum(q_new, self.lower), self.upper)
        self.a = (v_new - self.v) / self.dt
        self.v = v_new
        self.q = q_new
        return self.q, self.v, self.a

    def step(self, target_next, target_now):
        """Track the target: target_now is its value now, target_next one period ahead."""
        return self.step_velocity(self.desired_velocity(target_next, target_now))

    def brake(self):
        """Decelerate at the limit towards zero velocity (then hold)."""
        return self.step_velocity(np.zeros_like(self.v))
