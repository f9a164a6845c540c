"""Previewer: the commands a Follower would produce at future times if nothing else arrived.

Used by the joint_trajectory output to send a short rolling trajectory. The prediction steps a
second limiter from the current command state at PREVIEW_DT_S (the control period if longer), so
every point keeps the position, velocity and acceleration limits: 10 instead of 50 steps for a
0.1 s horizon at 500 Hz (at 50 Hz, the fine-stepped preview made the joint_trajectory output
overrun the 2 ms period). Points are within PREVIEW_DT_S / 2 of the requested times.

The braking tail (limits.braking_profile): from the last preview state every joint brakes at its
acceleration limit to a standstill, sampled every STOP_DT_S after the last preview time; the last
sample has every velocity exactly 0. joint_trajectory_controller (Jazzy and newer,
`allow_nonzero_velocity_at_trajectory_end: false` by default) rejects a trajectory whose last point
moves; ending each rolling trajectory at rest keeps it valid, and if the stream of trajectories
stops, the controller brakes the arm within the acceleration and position limits (the preview
state satisfies the limiter's braking-distance bound) instead of holding a moving target's pose. A
single stop point would not do: the controller's cubic over one long segment makes the joints that
stop early overshoot and come back, and decelerate beyond the limit.

With the follower's `scaled_time_output`, `times - now` (and the tail's times) are plan time, which
is the scaled controller's trajectory time, and velocities are per plan second: the message
carries them as they are, and the controller's own scaling makes them the arm's. ROS-free.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dp_controller.config import FollowerConfig
from dp_controller.limits import Limiter, braking_profile

PREVIEW_DT_S = 0.01   # step of the prediction (s)
STOP_DT_S = 0.02      # sample spacing of the braking tail (s)


class Previewer:
    def __init__(self, config: FollowerConfig) -> None:
        # The same limits as the follower's own limiter, stepped at a coarser period.
        self.limiter = Limiter(config.lower, config.upper, config.vmax, config.amax,
                               max(config.period_s, PREVIEW_DT_S))

    def predict(self, state, plan, lag: float, rate: float, now: float, times: Sequence[float],
                stop: bool = False):
        """From the command `state` (q, v, a) at `now`: the commands at `times` (increasing,
        > now), following `plan` (None: braking), whose time at t is t - lag - (1 - rate) *
        (t - now). Returns (positions (K, J), velocities (K, J)), and with `stop` a third value,
        the braking tail (times (M,), positions (M, J), velocities (M, J))."""
        lim = self.limiter
        lim.set_state(state)
        dt = lim.dt
        out_q, out_v = [], []
        t = now
        for tk in times:
            while t + 0.5 * dt < tk:
                t += dt
                if plan is not None:
                    tau = t - lag - (1.0 - rate) * (t - now)
                    lim.step(plan.position(tau).tolist(),
                             plan.position(tau - rate * dt).tolist())
                else:
                    lim.brake()
            out_q.append(lim.q.copy())
            out_v.append(lim.v.copy())
        if not stop:
            return np.array(out_q), np.array(out_v)
        tb, qb, vb = braking_profile(lim.q, lim.v, lim.amax, STOP_DT_S)
        return np.array(out_q), np.array(out_v), (times[-1] + tb, qb, vb)
