"""Follower: the ROS-free trajectory follower core (chunks in, limited command stream out).

Ties together validation of incoming chunks, the time-indexed plan (plan.py), the switching policy
(receding horizon / latest / temporal ensemble), the limiter (limits.py) and the watchdog
(watchdog.py). Times are float seconds on the caller's clock (the node clock: ROS or sim time).

    f = Follower(FollowerConfig(joint_names=[...], ...))
    f.start(q_measured, now)                  # hold the current position (state IDLE)
    f.on_chunk(stamp, names, t, pos, vel, now)  # -> 'accepted' or a rejection reason
    q, v, a = f.step(now)                      # once per control period: lists, rad (/s, /s^2)

Guarantees of `step` (tested by property): every command is inside the position limits, and
between consecutive commands |dv| <= amax*dt and |v| <= vmax, whatever chunks arrive. A start
position outside the limits (an arm parked between the configured limits and the hardware's) is
not clipped, which would be a step: the command holds there or moves inward within the velocity
and acceleration limits, never further out. When no valid chunk was accepted for watchdog_timeout_s, the
state becomes HOLDING and the command brakes at the acceleration limit to a standstill.

Tracking supervision (`supervise`, called with each measured state): when the arm is farther than
tracking_tolerance_rad from the command for tracking_timeout_s (a controller that rejects the
commands, an arm stopped by its driver or a protective stop), the command restarts from the
measured state, brakes and holds there, and chunks are refused ('tracking_fault') until resume():
a controller that accepts commands again gets the arm's own position, never a jump to where the
command had gone meanwhile.

Speed scaling (`set_speed_scaling`, UR's pendant slider): the plan runs on its own time, which
advances at the scaling factor (0..1) per second of the caller's clock; a chunk's actions are
placed on it from the plan time of the chunk's stamp (the factor's recent history is kept for
that), so at 50 % the arm executes a chunk over twice its duration, and at 0 the plan stands
still. Where the command goes depends on who executes it:
- `scaled_time_output` false (forward commands: nothing downstream scales): the command runs on
  the caller's clock and the limits hold per second of it; when the plan slows or stops, the
  command follows it within the acceleration limit.
- `scaled_time_output` true (a trajectory controller that advances its own trajectory time at the
  same factor: joint_trajectory_controller with speed scaling, UR's scaled controller): the
  command runs on plan time itself, the limits hold per second of plan time (so at the arm, per
  clock second, they hold scaled by the factor), and preview() is in plan time: what the follower
  commands is at every instant what the controller executes, whatever the factor does.
The watchdog, the stamp checks and the tracking supervision stay on the caller's clock. At 1 (the
default) plan time is the caller's time, and both modes are what they were without scaling.

Not here: ROS (follower_node.py), timing of the calls (control_loop.py).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np

from dp_common.joints import JointIndexer
from dp_controller.config import FollowerConfig
from dp_controller.limits import Limiter
from dp_controller.plan import Ensemble, enter_chunk
from dp_controller.plan_clock import PlanClock
from dp_controller.preview import Previewer
from dp_controller.watchdog import Watchdog

STATE_IDLE = 0
STATE_FOLLOWING = 1
STATE_HOLDING = 2
STATE_STOPPED = 3
STATE_LABELS = {STATE_IDLE: 'idle', STATE_FOLLOWING: 'following', STATE_HOLDING: 'holding',
                STATE_STOPPED: 'stopped'}

ACCEPTED = 'accepted'   # else on_chunk returns the rejection reason (FollowerStatus.rejected)


class _Chunk:
    __slots__ = ('stamp', 't_abs', 'pos', 'vel', 'switch_time', 'spacing')

    def __init__(self, stamp, t_abs, pos, vel, switch_time):
        self.stamp, self.t_abs, self.pos, self.vel, self.switch_time = (
            stamp, t_abs, pos, vel, switch_time)
        # its point spacing (s; computed on acceptance, not in the control step)
        self.spacing = float(np.median(np.diff(t_abs))) if len(t_abs) > 1 else 0.0


MIN_PLAN_STEP_S = 1e-6   # below this, a control period does not advance plan time (factor ~0)


class Follower:
    def __init__(self, config: FollowerConfig):
        self.cfg = config
        self.dt = config.period_s
        self.limiter = Limiter(config.lower, config.upper, config.vmax, config.amax, self.dt)
        self._previewer = Previewer(config)
        self.watchdog = Watchdog(config.watchdog_timeout_s)
        self.rejected = Counter()
        self.chunks_accepted = 0
        self._boundary_step_max = math.nan   # pop_boundary_step()
        self.state = STATE_STOPPED
        self.hold_reason = ''
        self._held_by_request = False
        self.tracking_fault = False     # latched by supervise(), cleared by resume()
        self.tracking_faults = 0
        self._off_track_since: Optional[float] = None
        self._plan = None
        self._current: Optional[_Chunk] = None
        self._pending: Optional[_Chunk] = None
        self._last_stamp = -math.inf
        self._last_accept_time = math.nan
        # The last step's plan, plan time and target (a list): the next step's target one
        # period ago.
        self._prev_plan, self._prev_t, self._prev_target = None, math.nan, None
        self._joints = JointIndexer(config.joint_names)
        self.clock = PlanClock()        # plan time under speed scaling; last_now: last step

    # ------------------------------------------------------------------ lifecycle
    def start(self, q_measured, now: float):
        """Begin commanding from the measured position (as it is, even outside the limits:
        the command then only moves inward); state IDLE."""
        self.limiter.reset(q_measured)
        self._drop_plan()
        self.state = STATE_IDLE
        self.hold_reason = ''
        self._off_track_since = None
        self.clock.reset(now)
        self._last_stamp = -math.inf

    def stop(self):
        """Stop commanding (lifecycle deactivate)."""
        self._drop_plan()
        self.state = STATE_STOPPED

    @property
    def started(self) -> bool:
        return self.state != STATE_STOPPED

    @property
    def command(self):
        return self.limiter.q, self.limiter.v, self.limiter.a

    @property
    def watchdog_trips(self) -> int:
        return self.watchdog.trips

    @property
    def last_accepted(self) -> tuple[float, float]:
        """(stamp, time of acceptance) of the last accepted chunk; NaN, NaN if none."""
        return self._last_stamp if self.chunks_accepted else math.nan, self._last_accept_time

    def time_since_last_chunk(self, now: Optional[float] = None) -> float:
        """Seconds from the last accepted chunk to `now` (default: the last step); NaN if none."""
        if now is None:
            now = math.nan if self.clock.last_now is None else self.clock.last_now
        return now - self._last_accept_time

    def hold(self, reason: str = 'hold_request'):
        """Stop following (brake within limits, hold) until resume(); chunks are rejected ('held')."""
        self._held_by_request = True
        self._enter_hold(reason)

    def resume(self):
        """Leave a requested hold or a tracking fault; the next valid chunk is followed again."""
        self._held_by_request = False
        self.tracking_fault = False
        self._off_track_since = None

    @property
    def speed_scaling(self) -> float:
        return self.clock.factor

    def set_speed_scaling(self, factor: float) -> None:
        """The rate of plan time per second of the caller's clock from the next step on: clipped
        to [0, 1] (never faster than the policy planned); non-finite values are ignored."""
        self.clock.set_factor(factor)

    def plan_time(self, t: float) -> float:
        """Plan time at the caller's time t (PlanClock.at)."""
        return self.clock.at(t)

    def supervise(self, q_measured, now: float, v_measured=None) -> bool:
        """Compare the measured position (rad, (J,)) with the current command. Beyond
        tracking_tolerance_rad on any joint for tracking_timeout_s: restart the command from the
        measured state (position, and velocity where given, clipped to vmax), brake and
        hold ('tracking'), refuse chunks until resume(). Returns True when it tripped now.

        The measured state lags the command by the controller's latency (a joint at 2 rad/s
        behind by 20 ms: 0.04 rad); the tolerance must be well above that."""
        tol = self.cfg.tracking_tolerance_rad
        if tol <= 0.0 or not self.started:
            return False
        q = np.asarray(q_measured, dtype=np.float64)
        if float(np.max(np.abs(self.limiter.q - q))) <= tol:
            self._off_track_since = None
            return False
        if self._off_track_since is None:
            self._off_track_since = now
        if now - self._off_track_since < self.cfg.tracking_timeout_s:
            return False
        self._off_track_since = None
        self.limiter.reset(q, v_measured)
        self._trip('tracking')
        return True

    def supervise_stale(self, now: float, measured_at: float,
                        reason: str = 'joint_states_stale') -> bool:
        """No valid input since `measured_at` for joint_state_timeout_s (a driver that died, a
        joint state topic that went silent; follower_node also passes its speed scaling topic,
        'speed_scaling_stale'): the commands can no longer be checked against the arm; brake from
        the current command, hold (`reason`), refuse chunks until resume(), as a tracking fault.
        Returns True when it tripped now."""
        timeout = self.cfg.joint_state_timeout_s
        if timeout <= 0.0 or not self.started or self.tracking_fault:
            return False
        if not math.isfinite(measured_at) or now - measured_at < timeout:
            return False
        self._trip(reason)
        return True

    def _trip(self, reason: str) -> None:
        """A tracking fault: counted, latched until resume(), brake and hold."""
        self.tracking_fault = True
        self.tracking_faults += 1
        self._enter_hold(reason)

    # ------------------------------------------------------------------ chunks
    def count_rejection(self, reason: str) -> str:
        """Count a rejection (on_chunk's, or one decided outside, e.g. a malformed message)."""
        self.rejected[reason] += 1
        return reason

    def precheck(self, stamp: float, now: float) -> str:
        """The rejection reason on_chunk would give any chunk with this stamp now, before its
        points are looked at ('' if none): lets a caller skip costly work (inverse kinematics
        of an end-effector chunk) on a chunk that cannot be taken. Not counted."""
        if not self.started:
            return 'not_started'
        if self._held_by_request:
            return 'held'
        if self.tracking_fault:
            return 'tracking_fault'
        if not math.isfinite(stamp):
            return 'non_finite'
        if now - stamp > self.cfg.max_stamp_age_s:
            return 'stamp_too_old'
        if stamp - now > self.cfg.max_future_stamp_s:
            return 'stamp_in_future'
        if stamp < self._last_stamp:
            return 'out_of_order'
        return ''

    def on_chunk(self, stamp: float, names: Sequence[str], t_from_start, positions,
                 velocities=None, now: float = 0.0, n_action_steps: Optional[int] = None) -> str:
        """Validate a chunk and hand it to the plan. Returns 'accepted' or the rejection reason.

        stamp: header stamp (newest observation time), s. names: joint names in message order
        (extra joints are ignored, a missing configured joint rejects). t_from_start (N,) s,
        positions (N, len(names)) rad, velocities same shape or None.
        n_action_steps: overrides the configured value for this chunk (e.g. from ActionChunk).
        """
        if not self.started:
            return self.count_rejection('not_started')
        if self._held_by_request:
            return self.count_rejection('held')
        if self.tracking_fault:
            return self.count_rejection('tracking_fault')
        idx, reason = self._joints.indices(names)
        if idx is None:    # 'missing_joint:...' / 'duplicate_joint:...' counted without the names
            return self.count_rejection(reason.split(':')[0])
        reason, t, pos, vel = checked_chunk(self.cfg, idx, len(names), stamp, t_from_start,
                                            positions, velocities, now)
        if reason:
            return self.count_rejection(reason)
        if stamp < self._last_stamp:
            return self.count_rejection('out_of_order')
        t_abs = self.plan_time(stamp) + t     # on plan time (== the caller's at full speed)
        tau = self.plan_time(now)
        if t_abs[-1] <= tau:
            return self.count_rejection('expired')

        n_steps = self.cfg.n_action_steps if n_action_steps is None else int(n_action_steps)
        first = int(np.searchsorted(t, -1e-9, side='left'))   # action for the stamp itself
        k = first + n_steps
        switch_time = float(t_abs[k]) if (n_steps > 0 and k < t.shape[0]) else float(t_abs[-1])
        chunk = _Chunk(stamp, t_abs, np.clip(pos, self.cfg.lower, self.cfg.upper), vel, switch_time)

        self._last_stamp = stamp
        self.chunks_accepted += 1
        self._last_accept_time = now
        self.watchdog.feed(now)
        if self.state != STATE_FOLLOWING or self.cfg.execution_mode != 'receding_horizon':
            self._enter(chunk, tau)
        else:
            self._pending = chunk
        return ACCEPTED

    # ------------------------------------------------------------------ plan
    def _drop_plan(self):
        self._plan = None
        self._current = None
        self._pending = None

    def _enter_hold(self, reason: str):
        self._drop_plan()
        self.watchdog.disarm()
        if self.state != STATE_STOPPED:
            self.state = STATE_HOLDING
            self.hold_reason = reason

    def _continues_plan(self, chunk: _Chunk, now: float) -> bool:
        """The chunk's next point past the shortest entry (enter_chunk's: at least a period, half
        a chunk step) is within rtc_max_step_rad of the plan at that time on every joint."""
        t = chunk.t_abs
        gap = max(self.dt, 0.5 * chunk.spacing)
        ahead = np.flatnonzero(t > now + gap)
        if not len(ahead):
            return False
        k = int(ahead[0])
        planned = np.asarray(self._plan.position(float(chunk.t_abs[k])), dtype=np.float64)
        return bool(np.all(np.abs(planned - chunk.pos[k]) <= self.cfg.rtc_max_step_rad))

    def _enter(self, chunk: _Chunk, now: float) -> bool:
        """Make the chunk the plan (or an ensemble member) from plan time `now`."""
        following = self.state == STATE_FOLLOWING and self._plan is not None
        if following:
            entry = self._plan.evaluate(now)
            t_probe = now + max(chunk.spacing, self.dt)
            before = np.asarray(self._plan.position(t_probe), dtype=np.float64)
        else:
            q, v, a = self.limiter.copy_state()
            if not self.cfg.scaled_time_output and self.speed_scaling < 1.0:
                # The command's velocity is per clock second, the plan's per plan second.
                s = self.speed_scaling
                v, a = (v / s, a / (s * s)) if s >= 0.05 else (np.zeros_like(v), np.zeros_like(a))
            entry = (q, v, a)
        ensemble = self.cfg.execution_mode == 'temporal_ensemble'
        # Ensemble members fade in over the blend window themselves, and a real-time-chunking
        # chunk that starts with the actions of the plan it replaces (frozen by the policy):
        # their entry bridge is short (the next chunk point), no cross-fade.
        short = ensemble or (self.cfg.execution_mode == 'rtc' and following
                             and self._continues_plan(chunk, now))
        gap = self.dt if short else max(self.dt, self.cfg.blend_window_s)
        new = enter_chunk(chunk.t_abs, chunk.pos, chunk.vel, now, entry, min_gap_s=gap)
        if new is None:
            return False
        if ensemble:
            if not (following and isinstance(self._plan, Ensemble)):
                self._plan = Ensemble(self.cfg.ensemble_decay, self.cfg.blend_window_s,
                                      self.cfg.max_ensemble_chunks)
            self._plan.add(new, now)
        else:
            self._plan = new
        if following:
            step = float(np.max(np.abs(np.asarray(self._plan.position(t_probe)) - before)))
            if not step <= self._boundary_step_max:          # the first (NaN) or a larger one
                self._boundary_step_max = step
        self._current = chunk
        self._pending = None
        self.state = STATE_FOLLOWING
        self.hold_reason = ''
        return True

    # ------------------------------------------------------------------ control
    def step(self, now: float):
        """One control period: returns the command (q, v, a) for time `now` (lists of J floats,
        in the configured joint order: the 500 Hz path builds no array; not to be changed).

        When more than one period passed since the last call (a starved or overrunning control
        thread), the periods in between are stepped through first (at most
        max_catch_up_steps), so that the command keeps time with the plan; the limits hold per
        period, so the command moves by at most what the elapsed periods allow.
        """
        if self.clock.last_now is not None and self.cfg.max_catch_up_steps > 0:
            missed = min(int((now - self.clock.last_now) / self.dt + 0.5) - 1,
                         self.cfg.max_catch_up_steps)
            for i in range(missed, 0, -1):
                self._step_once(now - i * self.dt)
        return self._step_once(now)

    def _step_once(self, now: float):
        last = self.clock.last_now
        if last is not None and now < last - self.cfg.clock_jump_tolerance_s:
            self._enter_hold('clock_jump')
            self._last_stamp = -math.inf
        tau = self.clock.advance(now)      # plan time (== now at full speed)
        if self.state == STATE_FOLLOWING and self.watchdog.expired(now):
            self._enter_hold('watchdog')
        # The command's own step: a control period of the caller's clock, or with
        # scaled_time_output the plan time that period covers (none at a factor of ~0: the
        # command, like the controller's trajectory, stands still).
        plan_dt = self.speed_scaling * self.dt
        cmd_dt = None
        if self.cfg.scaled_time_output and self.speed_scaling < 1.0:
            if plan_dt < MIN_PLAN_STEP_S:
                return self.limiter.last_step()
            cmd_dt = plan_dt
        if self.state == STATE_FOLLOWING:
            if (self._pending is not None and self._current is not None
                    and tau >= self._current.switch_time):
                pending = self._pending
                self._pending = None
                self._enter(pending, tau)
            plan = self._plan = self._plan.simplify(tau)
            # The target one period ago is the previous step's target when the plan is the same
            # object (an ensemble member added since then still had weight 0 at that time).
            tau_before = tau - plan_dt
            if plan is self._prev_plan and abs(tau_before - self._prev_t) < 0.25 * self.dt:
                target_now = self._prev_target
            else:
                target_now = plan.position(tau_before).tolist()
            target_next = plan.position(tau).tolist()
            self._prev_plan, self._prev_t, self._prev_target = plan, tau, target_next
            return self.limiter.step(target_next, target_now, cmd_dt)
        return self.limiter.brake(cmd_dt)

    def pop_max_jerk(self) -> float:
        """Max |jerk| of the command stream since the last call (rad/s^3); resets it."""
        return self.limiter.pop_max_jerk()

    def pop_jerk(self) -> tuple[float, float, int]:
        """(max, RMS jerk (rad/s^3), terms) of the command stream since the last call."""
        return self.limiter.pop_jerk()

    def pop_boundary_step(self) -> float:
        """The largest chunk boundary step since the last call (rad; NaN: no chunk entered
        while following): at each chunk entry, max over the joints of |plan after - plan before|
        one chunk step (the chunk's point spacing) after the entry, i.e. how far the new chunk
        moves where the arm is about to be, whatever the execution mode (a switch, a blend, an
        ensemble member, a real-time chunk)."""
        v, self._boundary_step_max = self._boundary_step_max, math.nan
        return v

    def preview(self, now: float, times: Sequence[float], stop: bool = False):
        """Commands the follower would produce at future `times` (increasing, > now) if nothing
        else arrived, without changing its state (see preview.Previewer): positions (K, J),
        velocities (K, J), and with `stop` the braking tail (times, positions, velocities)."""
        plan = self._plan if self.state == STATE_FOLLOWING else None
        # Plan time at t: with scaled_time_output, t - now is itself plan time (the controller's
        # trajectory time); else the plan advances at the factor.
        rate = 1.0 if self.cfg.scaled_time_output else self.clock.factor
        return self._previewer.predict(self.limiter.copy_state(), plan, now - self.clock.at(now),
                                       rate, now, times, stop)


def checked_chunk(cfg: FollowerConfig, idx: np.ndarray, n_names: int, stamp: float, t_from_start,
                  positions, velocities, now: float):
    """A chunk's arrays checked against the configuration: (rejection reason or '', times (N,),
    positions (N, J) and velocities (N, J) or None in the configured joint order)."""
    try:
        t = np.asarray(t_from_start, dtype=np.float64).reshape(-1)
        pos = np.asarray(positions, dtype=np.float64)
        vel = None if velocities is None else np.asarray(velocities, dtype=np.float64)
    except (TypeError, ValueError):
        return 'bad_shape', None, None, None
    if t.shape[0] == 0:
        return 'empty', None, None, None
    if pos.ndim != 2 or pos.shape != (t.shape[0], n_names) or (
            vel is not None and vel.shape != pos.shape):
        return 'bad_shape', None, None, None
    pos = pos[:, idx]
    vel = None if vel is None else vel[:, idx]
    reason = ''
    if not (math.isfinite(stamp) and np.all(np.isfinite(t)) and np.all(np.isfinite(pos))
            and (vel is None or np.all(np.isfinite(vel)))):
        reason = 'non_finite'
    elif t.shape[0] > 1 and np.any(np.diff(t) <= 0.0):
        reason = 'non_monotonic_time'
    elif now - stamp > cfg.max_stamp_age_s:
        reason = 'stamp_too_old'
    elif stamp - now > cfg.max_future_stamp_s:
        reason = 'stamp_in_future'
    elif (np.any(pos < cfg.lower - cfg.position_tolerance_rad)
          or np.any(pos > cfg.upper + cfg.position_tolerance_rad)):
        reason = 'position_limit'
    return reason, t, pos, vel
