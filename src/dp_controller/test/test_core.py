"""Core tests of the follower without ROS: splines, blending, limiter, switching, watchdog, bad input.

Property-based tests (hypothesis) drive the Follower with random chunk sequences and arrival
times and check, on every command: inside the position limits, |v| <= vmax, |dv| <= amax*dt,
and a watchdog hold within the configured time.
"""
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dp_controller.config import FollowerConfig
from dp_controller.follower import (ACCEPTED, STATE_FOLLOWING, STATE_HOLDING, STATE_IDLE,
                                    Follower)
from dp_controller.limits import Limiter, braking_profile
from dp_controller.plan import HoldPlan, enter_chunk
from dp_controller.spline import QuinticSpline, estimate_derivatives

NAMES = ['j1', 'j2']
EPS = 1e-9


def make_cfg(**kw):
    base = dict(joint_names=NAMES, control_rate_hz=500.0, position_lower_rad=[-1.0, -2.0],
                position_upper_rad=[1.0, 0.5], max_velocity_rad_s=[2.0, 1.0],
                max_acceleration_rad_s2=[10.0, 5.0], watchdog_timeout_s=0.3,
                blend_window_s=0.1, n_action_steps=4)
    base.update(kw)
    return FollowerConfig(**base)


def wave(t):
    t = np.asarray(t, dtype=np.float64)[:, None]
    return np.concatenate([0.5 * np.sin(1.3 * t), 0.3 * np.cos(0.9 * t) - 0.5], axis=1)


def chunk(stamp, n=16, dt=0.1, offset=0.0):
    t = np.arange(n) * dt
    return t, wave(stamp + t) + offset


def started(**kw) -> Follower:
    """A follower of make_cfg(**kw), started at the origin at time 0."""
    f = Follower(make_cfg(**kw))
    f.start([0.0, 0.0], 0.0)
    return f


def constant(stamp, n, value):
    """A chunk for run(): n points 0.1 s apart at `value` on both joints, arriving at its stamp."""
    return (stamp, stamp, NAMES, np.arange(n) * 0.1, np.full((n, 2), value), None)


def run(f, t0, t1, chunks=()):
    """Step f from t0 to t1; chunks: list of (arrival, stamp, names, t, pos, vel). Returns arrays."""
    dt = f.dt
    chunks = sorted(chunks, key=lambda c: c[0])
    ci = 0
    ts, qs, vs, states, results = [], [], [], [], []
    for k in range(int(round((t1 - t0) / dt))):
        now = t0 + k * dt
        while ci < len(chunks) and chunks[ci][0] <= now:
            _, stamp, names, t, pos, vel = chunks[ci]
            results.append(f.on_chunk(stamp, names, t, pos, vel, now))
            ci += 1
        q, v, _ = f.step(now)
        ts.append(now)
        qs.append(q.copy())
        vs.append(v.copy())
        states.append(f.state)
    return np.array(ts), np.array(qs), np.array(vs), np.array(states), results


def assert_within_limits(cfg, q, v, q_start=None):
    dt = cfg.period_s
    assert np.all(q >= cfg.lower - EPS) and np.all(q <= cfg.upper + EPS), 'position limit'
    assert np.all(np.abs(v) <= cfg.vmax * (1 + 1e-9) + EPS), 'velocity limit'
    qq = q if q_start is None else np.vstack([q_start, q])
    vel = np.diff(qq, axis=0) / dt
    assert np.all(np.abs(vel) <= cfg.vmax * (1 + 1e-6) + 1e-9), 'velocity (from positions)'
    acc = np.diff(vel, axis=0) / dt
    assert np.all(np.abs(acc) <= cfg.amax * (1 + 1e-6) + 1e-6), 'acceleration (from positions)'


def test_core_is_ros_free():
    code = ('import sys; import dp_controller.follower, dp_controller.control_loop, '
            'dp_controller.config; assert "rclpy" not in sys.modules, "rclpy imported"')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_quintic_spline_is_c2_and_interpolates():
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.uniform(0.05, 0.2, 8))
    p = rng.normal(size=(8, 3))
    v, a = estimate_derivatives(t, p)
    s = QuinticSpline(t, p, v, a)
    for i, ti in enumerate(t[:-1]):
        np.testing.assert_allclose(s.evaluate(ti)[0], p[i], atol=1e-12)
    for ti in t[1:-1]:
        lo, hi = s.evaluate(ti - 1e-7), s.evaluate(ti + 1e-7)
        for k in range(3):
            np.testing.assert_allclose(lo[k], hi[k], atol=1e-3 * (10 ** k))
    np.testing.assert_allclose(s.evaluate(t[-1] + 1.0)[0], p[-1])


def test_entry_bridge_is_c2_and_lasts_the_blend_window():
    """The switch onto a new chunk matches the current state (p, v, a) and reaches the chunk's
    points only after the blend window."""
    state = (np.array([0.2, -0.1]), np.array([0.5, -0.3]), np.array([2.0, 1.0]))
    t = np.arange(10) * 0.1
    new = enter_chunk(t, wave(t), None, 0.0, state, min_gap_s=0.25)
    for k in range(3):
        np.testing.assert_allclose(new.evaluate(0.0)[k], state[k], atol=1e-12)
        np.testing.assert_allclose(new.evaluate(1e-6)[k], state[k], atol=1e-3 * 10 ** k)
    assert new.spline.t[1] > 0.25
    np.testing.assert_allclose(new.evaluate(0.4)[0], wave([0.4])[0], atol=1e-12)
    # Only the last point ahead, inside the gap: the plan ends there, at rest.
    end = enter_chunk(t[:3], wave(t[:3]), None, 0.15, state, min_gap_s=0.25)
    np.testing.assert_allclose(end.evaluate(0.15 + 0.25)[0], wave([0.2])[0], atol=1e-12)
    assert HoldPlan(state[0]).evaluate(3.0)[1].tolist() == [0.0, 0.0]


def test_position_matches_evaluate_for_splines_and_ensembles():
    from dp_controller.plan import Ensemble
    t = 1.0 + np.arange(12) * 0.1
    state = (np.array([0.1, -0.2]), np.array([0.3, 0.0]), np.array([-1.0, 2.0]))
    a = enter_chunk(t, wave(t), None, 1.05, state)
    b = enter_chunk(t + 0.3, wave(t) + 0.1, None, 1.35, a.evaluate(1.35))
    ens = Ensemble(0.3, 0.1, 8)
    ens.add(a, 1.05)
    ens.add(b, 1.35)
    for plan in (a, b, ens):
        for tq in np.linspace(0.9, 2.6, 41):
            np.testing.assert_allclose(plan.position(tq), plan.evaluate(tq)[0], atol=1e-12)
    # The batched ensemble evaluation caches its members: adding and dropping members refreshes it.
    c = enter_chunk(t + 0.6, wave(t) - 0.2, None, 1.65, ens.evaluate(1.65))
    ens.add(c, 1.65)
    for tq in np.linspace(1.5, 2.8, 27):
        np.testing.assert_allclose(ens.position(tq), ens.evaluate(tq)[0], atol=1e-12)
    ens.simplify(a.t_end + 0.01)
    assert len(ens.members) == 2
    for tq in np.linspace(a.t_end, 3.0, 27):
        np.testing.assert_allclose(ens.position(tq), ens.evaluate(tq)[0], atol=1e-12)


def test_enter_chunk_skips_points_in_the_past():
    t_abs = 10.0 + np.arange(16) * 0.1
    plan = enter_chunk(t_abs, wave(t_abs), None, 10.33, (np.zeros(2), np.zeros(2), np.zeros(2)))
    knots = plan.spline.t
    assert knots[0] == 10.33 and np.all(knots[1:] > 10.33 + 0.05)
    assert enter_chunk(t_abs, wave(t_abs), None, 12.0, (np.zeros(2),) * 3) is None


def drive(lim, targets, nan_in: bool, repeats: int):
    """Step the limiter `repeats` times towards each target (every 7th with a NaN when nan_in):
    positions and velocities, the start state first."""
    qs, vs = [lim.q.copy()], [lim.v.copy()]
    for i, (a, b) in enumerate(targets):
        tgt = np.array([a, b])
        if nan_in and i % 7 == 3:
            tgt[0] = np.nan
        for _ in range(repeats):
            q, v, _ = lim.step(tgt, tgt)
            qs.append(q.copy())
            vs.append(v.copy())
    return np.array(qs), np.array(vs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=1, max_size=60),
       st.floats(-0.99, 0.99), st.booleans())
def test_limiter_never_leaves_limits(targets, q0, nan_in):
    lim = Limiter([-1.0, -1.0], [1.0, 1.0], [2.0, 0.5], [10.0, 3.0], 0.002)
    lim.reset([q0, -q0])
    q, v = drive(lim, targets, nan_in, 5)
    assert np.all(q >= -1.0 - EPS) and np.all(q <= 1.0 + EPS)
    assert np.all(np.abs(v) <= np.array([2.0, 0.5]) + EPS)
    assert np.all(np.abs(np.diff(v, axis=0)) <= np.array([10.0, 3.0]) * 0.002 * (1 + 1e-9) + EPS)


def test_limiter_tracks_a_feasible_target_exactly():
    lim = Limiter([-1.0], [1.0], [2.0], [10.0], 0.002)
    t = np.arange(0, 2, 0.002)
    ref = 0.5 * np.sin(t)
    lim.reset([ref[0]], [0.5])
    out = [lim.step(np.array([ref[k]]), np.array([ref[k - 1]]))[0][0] for k in range(1, len(t))]
    np.testing.assert_allclose(out, ref[1:], atol=1e-9)


# ------------------------------------------------------------------ follower: properties

chunk_event = st.tuples(
    st.floats(0.0, 2.5),                  # arrival time
    st.floats(-0.6, 0.2),                 # stamp - arrival (latency; positive = future)
    st.integers(1, 20),                   # points
    st.floats(0.02, 0.3),                 # point spacing
    st.floats(-1.5, 1.5), st.floats(-2.5, 1.0),   # base positions (may be outside limits)
    st.floats(-3.0, 3.0),                 # slope (rad/s) of the chunk's positions
    st.sampled_from(['ok', 'ok', 'ok', 'nan', 'swap_names', 'non_monotonic', 'with_vel']))


def build_chunk(ev):
    arrival, lat, n, dt, b0, b1, slope, kind = ev
    t = np.arange(n) * dt
    pos = np.stack([b0 + slope * t, b1 - 0.5 * slope * t], axis=1)
    names = list(NAMES)
    vel = None
    if kind == 'nan':
        pos[n // 2, 0] = np.nan
    elif kind == 'swap_names':
        names, pos = names[::-1], pos[:, ::-1]
    elif kind == 'non_monotonic' and n > 1:
        t[-1] = t[0]
    elif kind == 'with_vel':
        vel = np.tile([slope, -0.5 * slope], (n, 1)) * 5.0   # inconsistent on purpose
    return (arrival, arrival + lat, names, t, pos, vel)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunk_event, min_size=0, max_size=25),
       st.sampled_from(['receding_horizon', 'latest', 'temporal_ensemble']),
       st.sampled_from([0.0, 0.05, 0.2]), st.integers(0, 6),
       st.tuples(st.floats(-1.0, 1.0), st.floats(-2.0, 0.5)))
def test_follower_output_always_inside_limits_and_watchdog_holds(events, mode, blend, n_steps, q0):
    cfg = make_cfg(execution_mode=mode, blend_window_s=blend, n_action_steps=n_steps)
    f = Follower(cfg)
    f.start(np.array(q0), 0.0)
    chunks = [build_chunk(ev) for ev in events]
    ts, q, v, states, results = run(f, 0.0, 4.0, chunks)
    assert_within_limits(cfg, q, v, q_start=np.clip(q0, cfg.lower, cfg.upper))
    assert all(r == ACCEPTED or isinstance(r, str) for r in results)
    # Watchdog: never following longer than timeout + one period after the last accepted chunk.
    accepted_times = [c[0] for c, r in zip(sorted(chunks, key=lambda c: c[0]), results)
                      if r == ACCEPTED]
    last = max(accepted_times, default=-math.inf)
    dt = cfg.period_s
    following_late = (states == STATE_FOLLOWING) & (ts > last + cfg.watchdog_timeout_s + dt + EPS)
    assert not np.any(following_late)
    # ... and at a standstill once the braking time has passed too.
    t_stop = max(last, 0.0) + cfg.watchdog_timeout_s + float(np.max(cfg.vmax / cfg.amax)) + 2 * dt
    assert np.all(np.abs(v[ts > t_stop]) < 1e-12)


@settings(max_examples=15, deadline=None)
@given(st.floats(0.0, 0.25), st.floats(0.07, 0.13), st.floats(-0.02, 0.02))
def test_latency_compensated_and_smooth_across_chunks(latency, period, noise):
    """Chunks of a smooth wave, each with its own offset (as a sampled policy): the command
    follows the wave at the right time (not delayed by the latency), and the switching between
    chunks never makes the acceleration saturate."""
    cfg = make_cfg(execution_mode='latest', blend_window_s=0.1,
                   max_acceleration_rad_s2=[50.0, 50.0], max_velocity_rad_s=[5.0, 5.0])
    f = Follower(cfg)
    f.start(wave([0.0])[0], 0.0)
    rng = np.random.default_rng(0)
    chunks = []
    for i, arrival in enumerate(np.arange(0.0, 3.0, period)):
        stamp = arrival - latency
        t, pos = chunk(stamp, offset=noise * (1 if i % 2 else -1) * rng.uniform(0.5, 1.0))
        chunks.append((arrival, stamp, NAMES, t, pos, None))
    ts, q, v, states, results = run(f, 0.0, 3.0, chunks)
    assert set(results) == {ACCEPTED}
    late = ts > 1.0
    assert np.max(np.abs(q[late] - wave(ts[late]))) < abs(noise) + 0.01
    acc = np.diff(v, axis=0) / cfg.period_s
    assert np.max(np.abs(acc[ts[1:] > 1.0])) < 0.9 * 50.0


def test_switching_smoother_with_blending():
    """Offset chunks: a cross-fade keeps the command jerk lower than switching without one."""
    def max_jerk(blend):
        cfg = make_cfg(execution_mode='latest', blend_window_s=blend,
                       max_acceleration_rad_s2=[50.0, 50.0], max_velocity_rad_s=[5.0, 5.0])
        f = Follower(cfg)
        f.start(wave([0.0])[0], 0.0)
        chunks = []
        for i, arrival in enumerate(np.arange(0.0, 2.0, 0.1)):
            t, pos = chunk(arrival - 0.05, offset=0.02 * (-1) ** i)
            chunks.append((arrival, arrival - 0.05, NAMES, t, pos, None))
        run(f, 0.0, 0.5, chunks[:5])
        f.pop_max_jerk()
        run(f, 0.5, 2.0, chunks[5:])
        return f.pop_max_jerk()
    no_blend = max_jerk(0.0)
    assert max_jerk(0.1) <= 1.05 * no_blend
    assert max_jerk(0.25) < 0.5 * no_blend


def test_receding_horizon_waits_for_n_action_steps_latest_does_not():
    def final_after(mode, t_end):
        f = started(execution_mode=mode, n_action_steps=5, blend_window_s=0.0,
                    watchdog_timeout_s=5.0)
        return run(f, 0.0, t_end, [constant(0.0, 16, 0.3), constant(0.1, 16, -0.3)])[1][-1]
    # chunk a switches at its 6th point (t = 0.5): before that, receding horizon stays on a.
    assert np.all(final_after('receding_horizon', 0.45) > 0.25)
    assert np.all(final_after('latest', 0.45) < 0.0)
    assert np.all(final_after('receding_horizon', 2.0) < -0.25)


def test_rtc_switches_at_once_onto_the_frozen_prefix_without_averaging():
    """A real-time-chunking chunk repeats the plan's actions up to its arrival (frozen) and goes
    elsewhere after: 'rtc' enters it at once onto its next point (0.6 s: no cross-fade; 'latest'
    with its 0.1 s blend window skips to 0.7 s), follows the plan until there and the new chunk
    after; 'temporal_ensemble' averages the two. A chunk that does not continue the plan (a late
    arrival) is blended in 'rtc' as in 'latest'."""
    a = (0.0, 0.0, NAMES, np.arange(20) * 0.1, wave(np.arange(20) * 0.1), None)
    b_pos = wave(0.5 + np.arange(20) * 0.1)
    ramp = np.clip((np.arange(20) - 2) / 5.0, 0.0, 1.0)[:, None]
    b_pos += 0.15 * ramp                       # frozen: the first 3 actions (0.5 .. 0.7 s)
    b = (0.52, 0.5, NAMES, np.arange(20) * 0.1, b_pos, None)
    jump = (0.52, 0.5, NAMES, np.arange(20) * 0.1, b_pos + 0.1, None)
    finals, knots = {}, {}
    for mode, second in (('rtc', b), ('latest', b), ('temporal_ensemble', b), ('rtc-late', jump)):
        f = Follower(make_cfg(execution_mode=mode.split('-')[0], blend_window_s=0.1,
                              ensemble_decay=0.0, watchdog_timeout_s=5.0))
        f.start(wave([0.0])[0], 0.0)                 # on chunk a's path from the start
        ts, q = run(f, 0.0, 0.53, [a, second])[:2]
        if mode != 'temporal_ensemble':
            knots[mode] = float(f._plan.spline.t[1])    # the entry segment's end
        ts2, q2 = run(f, 0.53, 1.6)[:2]
        ts, q = np.concatenate([ts, ts2]), np.concatenate([q, q2])
        finals[mode] = q[-1]
        if mode == 'rtc':
            on_a = (ts > 0.55) & (ts < 0.6)    # after the arrival, before the next free point
            np.testing.assert_allclose(q[on_a], wave(ts[on_a]), atol=2e-3)
            late = ts > 1.3                    # b's path, the ramp done
            np.testing.assert_allclose(q[late], wave(ts[late]) + 0.15, atol=5e-3)
            assert np.abs(np.diff(q, axis=0)).max() <= np.max(f.cfg.max_velocity_rad_s) * f.dt + EPS
    assert knots['rtc'] == pytest.approx(0.6) and knots['latest'] == pytest.approx(0.7)
    assert knots['rtc-late'] == pytest.approx(0.7)                  # blended: it jumps by 0.1
    assert np.abs(finals['temporal_ensemble'] - (wave([1.6])[0] + 0.075)).max() < 0.02


def test_temporal_ensemble_averages_overlapping_chunks():
    f = started(execution_mode='temporal_ensemble', ensemble_decay=0.0, blend_window_s=0.05,
                watchdog_timeout_s=5.0)
    q = run(f, 0.0, 1.3, [constant(0.0, 20, 0.4), constant(0.5, 20, -0.2)])[1]
    np.testing.assert_allclose(q[-1], [0.1, 0.1], atol=1e-3)


@pytest.mark.parametrize('mutate,reason', [
    (lambda c: c.update(pos=np.where(np.arange(16)[:, None] == 3, np.nan, c['pos'])), 'non_finite'),
    (lambda c: c.update(pos=c['pos'] * np.array([1.0, np.inf])), 'non_finite'),
    (lambda c: c['t'].__setitem__(5, c['t'][4]), 'non_monotonic_time'),
    (lambda c: c.update(names=['j1', 'other'], pos=c['pos']), 'missing_joint'),
    (lambda c: c.update(names=['j1', 'j1'], pos=c['pos']), 'duplicate_joint'),
    (lambda c: c.update(stamp=c['stamp'] - 5.0), 'stamp_too_old'),
    (lambda c: c.update(stamp=c['stamp'] + 5.0), 'stamp_in_future'),
    (lambda c: c['pos'].__setitem__((2, 0), 1.5), 'position_limit'),
    (lambda c: c.update(t=c['t'][:0], pos=c['pos'][:0]), 'empty'),
    (lambda c: c.update(pos=c['pos'][:, :1]), 'bad_shape'),
    (lambda c: c.update(t=c['t'][:1], pos=c['pos'][:1]), 'expired'),
])
def test_bad_chunks_rejected_with_reason_and_no_jump(mutate, reason):
    cfg = make_cfg(execution_mode='latest')
    f = Follower(cfg)
    f.start(wave([0.0])[0], 0.0)
    good = [(a, a - 0.03, NAMES, *chunk(a - 0.03), None) for a in np.arange(0.0, 1.0, 0.1)]
    run(f, 0.0, 1.0, good)
    c = dict(zip(['stamp', 'names', 't', 'pos'], [1.0 - 0.03, list(NAMES), *chunk(1.0 - 0.03)]))
    c['t'] = c['t'].copy()
    mutate(c)
    assert f.on_chunk(c['stamp'], c['names'], c['t'], c['pos'], None, 1.0) == reason
    assert f.rejected[reason] == 1
    q_before = f.command[0].copy()
    ts, q, v, *_ = run(f, 1.0, 1.2)
    assert_within_limits(cfg, q, v, q_start=q_before)
    assert np.max(np.abs(q - wave(ts))) < 0.01   # still following the last good chunk


def test_out_of_order_chunk_rejected():
    f = Follower(make_cfg())
    f.start([0.0, -0.5], 0.0)
    assert f.on_chunk(0.0, NAMES, *chunk(0.0), None, 0.01) == ACCEPTED
    assert f.on_chunk(-0.05, NAMES, *chunk(-0.05), None, 0.02) == 'out_of_order'


def test_extra_joints_ignored_and_order_by_name():
    f = Follower(make_cfg(execution_mode='latest', blend_window_s=0.0, watchdog_timeout_s=5.0))
    f.start([0.0, 0.0], 0.0)
    t = np.arange(16) * 0.1
    pos = np.tile([9.0, -0.4, 0.2], (16, 1))   # extra joint 'x' out of any limit: ignored
    assert f.on_chunk(0.0, ['x', 'j2', 'j1'], t, pos, None, 0.0) == ACCEPTED
    run(f, 0.0, 1.0)
    np.testing.assert_allclose(f.command[0], [0.2, -0.4], atol=1e-6)


def test_hold_and_resume():
    cfg = make_cfg(execution_mode='latest', watchdog_timeout_s=5.0)
    f = Follower(cfg)
    f.start(wave([0.0])[0], 0.0)
    run(f, 0.0, 0.5, [(0.0, 0.0, NAMES, *chunk(0.0), None)])
    assert f.state == STATE_FOLLOWING
    f.hold()
    assert f.state == STATE_HOLDING
    assert f.on_chunk(0.5, NAMES, *chunk(0.5), None, 0.5) == 'held'
    ts, q, v, states, _ = run(f, 0.5, 1.0)
    assert np.all(states == STATE_HOLDING) and np.all(v[-10:] == 0.0)
    f.resume()
    assert f.on_chunk(1.0, NAMES, *chunk(1.0), None, 1.0) == ACCEPTED
    ts, q, v, states, _ = run(f, 1.0, 1.5)
    assert states[-1] == STATE_FOLLOWING


def test_clock_jump_backwards_resets_plan_to_hold():
    f = Follower(make_cfg(execution_mode='latest', watchdog_timeout_s=5.0))
    f.start(wave([10.0])[0], 10.0)
    run(f, 10.0, 10.5, [(10.0, 10.0, NAMES, *chunk(10.0), None)])
    assert f.state == STATE_FOLLOWING
    q_before = f.command[0].copy()
    ts, q, v, states, _ = run(f, 2.0, 2.5)
    assert states[0] == STATE_HOLDING and f.hold_reason == 'clock_jump'
    assert_within_limits(f.cfg, q, v, q_start=q_before)
    # stamps from the new time base are accepted again
    assert f.on_chunk(2.5, NAMES, *chunk(2.5), None, 2.5) == ACCEPTED


def test_idle_holds_start_position():
    f = Follower(make_cfg())
    f.start([0.3, -0.2], 0.0)
    ts, q, v, states, _ = run(f, 0.0, 0.2)
    assert np.all(states == STATE_IDLE)
    np.testing.assert_array_equal(q, np.tile([0.3, -0.2], (len(ts), 1)))


def test_preview_does_not_change_state():
    f = Follower(make_cfg(execution_mode='latest'))
    f.start(wave([0.0])[0], 0.0)
    run(f, 0.0, 0.3, [(0.0, 0.0, NAMES, *chunk(0.0), None)])
    before = [x.copy() for x in f.command]
    pq, pv = f.preview(0.3, 0.3 + np.array([0.02, 0.04, 0.1]))
    assert pq.shape == (3, 2) and pv.shape == (3, 2)
    for a, b in zip(before, f.command):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(pq[-1], wave([0.4])[0], atol=2e-3)


def test_preview_keeps_the_limits_towards_a_far_target():
    cfg = make_cfg(execution_mode='latest')
    f = Follower(cfg)
    f.start([0.0, 0.0], 0.0)
    t = np.arange(16) * 0.1
    far = np.tile([0.99, -1.99], (16, 1))            # at the limits, far from the start
    assert f.on_chunk(0.0, NAMES, t, far, None, 0.0) == ACCEPTED
    f.step(0.002)
    times = 0.002 + np.linspace(0.0, 0.1, 6)[1:]
    pq, pv = f.preview(0.002, times)
    assert np.all(pq >= cfg.lower) and np.all(pq <= cfg.upper)
    assert np.all(np.abs(pv) <= cfg.vmax + 1e-12)
    dv = np.abs(np.diff(np.vstack([f.command[1], pv]), axis=0))
    assert np.all(dv <= cfg.amax * 0.02 + 1e-9)       # 20 ms between points
    assert np.all(np.abs(pq[-1]) > 0.01)              # it does move towards the target


def hermite(t0, t1, q0, q1, v0, v1, t):
    """Cubic Hermite between (t0, q0, v0) and (t1, q1, v1): joint_trajectory_controller's
    interpolation of points with positions and velocities."""
    h = t1 - t0
    s = (t - t0) / h
    return ((2 * s**3 - 3 * s**2 + 1) * q0 + (s**3 - 2 * s**2 + s) * h * v0
            + (-2 * s**3 + 3 * s**2) * q1 + (s**3 - s**2) * h * v1)


def test_braking_profile_as_a_controller_interpolates_it():
    """Joints at different speeds brake to rest: sampled every 20 ms, the controller's cubic
    between samples keeps each joint within its braking distance (no overshoot and return
    beyond 1e-4 rad), its deceleration within the limit, and the last sample at rest."""
    q = np.array([0.0, 1.0, -0.5])
    v = np.array([2.0, 0.4, -1.0])
    amax = np.array([10.0, 10.0, 5.0])
    t, pos, vel = braking_profile(q, v, amax, 0.02)
    assert t[-1] == pytest.approx(0.2) and np.all(np.diff(t) > 0) and t[0] > 0
    assert np.all(vel[-1] == 0.0)
    stop = q + np.sign(v) * v ** 2 / (2 * amax)
    np.testing.assert_allclose(pos[-1], stop, atol=1e-12)
    tt = np.concatenate([[0.0], t])
    pp = np.vstack([q, pos])
    vv = np.vstack([v, vel])
    for k in range(len(t)):
        ts = np.linspace(tt[k], tt[k + 1], 41)
        seg = np.stack([hermite(tt[k], tt[k + 1], pp[k, j], pp[k + 1, j], vv[k, j],
                                vv[k + 1, j], ts) for j in range(3)], axis=1)
        beyond = np.sign(v) * (seg - stop)             # > 0: past the stop position
        assert np.all(beyond <= 1e-4), (k, beyond.max())
        acc = np.diff(seg, n=2, axis=0) / (ts[1] - ts[0]) ** 2
        assert np.all(np.abs(acc) <= amax * 1.0001 + 0.5), (k, np.abs(acc).max(axis=0))
    # At rest: one sample, one period later, where it is.
    t, pos, vel = braking_profile(q, np.zeros(3), amax, 0.02)
    assert t.tolist() == [0.02] and np.all(vel == 0.0)
    np.testing.assert_array_equal(pos[0], q)


def test_preview_stop_tail_brakes_to_zero_within_the_limits():
    """The braking tail that ends every rolling trajectory (joint_trajectory_controller rejects
    a moving end): after the preview, zero velocity at the end, inside the position limits, no
    faster than the acceleration limit allows."""
    cfg = make_cfg(execution_mode='latest')
    f = Follower(cfg)
    f.start([0.0, 0.0], 0.0)
    t = np.arange(16) * 0.1
    far = np.tile([0.99, -1.99], (16, 1))
    assert f.on_chunk(0.0, NAMES, t, far, None, 0.0) == ACCEPTED
    for k in range(1, 150):                               # moving fast towards the limits
        f.step(k * 0.002)
    now = 149 * 0.002
    times = now + np.linspace(0.0, 0.1, 6)[1:]
    pq, pv, (tt, qt, vt) = f.preview(now, times, stop=True)
    pq2, pv2 = f.preview(now, times)
    np.testing.assert_array_equal(pq, pq2)               # the same preview points
    assert np.any(np.abs(pv[-1]) > 0.1)                   # still moving at the last point
    assert tt[0] > times[-1] and np.all(np.diff(tt) > 0) and np.all(vt[-1] == 0.0)
    assert np.all(qt >= cfg.lower) and np.all(qt <= cfg.upper)
    dv = np.abs(np.diff(np.vstack([pv[-1], vt]), axis=0))
    assert np.all(dv <= cfg.amax * np.diff(np.concatenate([[times[-1]], tt]))[:, None] + 1e-9)


def test_config_validation():
    with pytest.raises(ValueError):
        make_cfg(position_lower_rad=[1.0, 0.0], position_upper_rad=[0.0, 1.0])
    with pytest.raises(ValueError):
        make_cfg(execution_mode='nope')
    with pytest.raises(ValueError):
        make_cfg(max_velocity_rad_s=[1.0, 2.0, 3.0])
    assert make_cfg(max_velocity_rad_s=3.0).vmax.tolist() == [3.0, 3.0]


def test_skipped_periods_are_caught_up():
    """A control thread that runs late (every 3rd period here) commands exactly what a punctual
    one commands at the same instants, and the limits hold per period."""
    cfg = make_cfg(execution_mode='latest')
    a, b = Follower(cfg), Follower(cfg)
    for f in (a, b):
        f.start(wave([0.0])[0], 0.0)
        f.on_chunk(0.0, NAMES, *chunk(0.0), None, 0.0)
    dt = cfg.period_s
    for k in range(1, 301):
        qa = a.step(k * dt)[0]
        if k % 3 == 0:
            qb = b.step(k * dt)[0]
            np.testing.assert_allclose(qb, qa, atol=1e-12)


def _closed_loop_with_a_dead_controller(f, dead_from, dead_to, t_end, delay_steps=5):
    """A chunk every 0.1 s; the arm executes each command `delay_steps` periods later, except
    from `dead_from` to `dead_to`, where the controller rejects everything and the arm stands.
    Every 10 ms (joint states at 100 Hz) the follower supervises. Returns (times, arm, commands,
    states, chunk results)."""
    dt = f.dt
    arm = f.command[0].copy()
    pending = []
    ts, arms, cmds, states, results = [], [], [], [], []
    for k in range(int(round(t_end / dt))):
        now = k * dt
        if k % 50 == 0:
            results.append((now, f.on_chunk(now, NAMES, *chunk(now), None, now)))
        q, _, _ = f.step(now)
        pending.append(q.copy())
        if len(pending) > delay_steps:
            executed = pending.pop(0)
            if not dead_from <= now < dead_to:
                arm = executed
        if k % 5 == 0:
            f.supervise(arm, now)
        ts.append(now)
        arms.append(arm.copy())
        cmds.append(q.copy())
        states.append(f.state)
    return np.array(ts), np.array(arms), np.array(cmds), np.array(states), results


def test_tracking_fault_holds_at_the_arm_and_nothing_jumps_when_the_controller_accepts_again():
    # The controller rejects every command for 2 s (issue 17: "hold within the tracking timeout,
    # never a jump"), then accepts again.
    cfg = make_cfg(execution_mode='latest', watchdog_timeout_s=5.0, tracking_tolerance_rad=0.1,
                   tracking_timeout_s=0.2)
    f = Follower(cfg)
    f.start(wave([0.0])[0], 0.0)
    ts, arm, cmd, states, results = _closed_loop_with_a_dead_controller(f, 1.0, 3.0, 4.0)
    assert f.tracking_faults == 1 and f.tracking_fault
    tripped = ts[np.argmax(states == STATE_HOLDING)]
    # The arm stands from 1.0 s; the command leaves it at <= 1 rad/s (joint 2's limit), so the
    # tolerance is crossed within ~0.1-0.3 s, the fault 0.2 s later.
    assert 1.0 + cfg.tracking_timeout_s < tripped < 1.0 + 0.5 + cfg.tracking_timeout_s
    assert f.hold_reason == 'tracking'
    # From the step after the trip (supervise runs after the step) the command is where the arm
    # stands, and stays there.
    after = ts > tripped
    assert np.max(np.abs(cmd[after] - arm[after][0])) < 1e-9
    # Chunks are refused (counted) until resume(), the controller accepting again or not.
    assert all(r == 'tracking_fault' for t, r in results if t > tripped)
    assert f.rejected['tracking_fault'] >= 10
    # Where the controller accepts again (3 s), the arm gets the position it stands at: from the
    # controller's failure to the end it does not move at all (no jump at 3 s).
    assert np.max(np.ptp(arm[ts >= 1.0], axis=0)) < 1e-12
    assert_within_limits(cfg, arm[ts < 1.0], np.zeros_like(arm[ts < 1.0]))
    # resume(): the next chunk is followed, starting from the held position.
    f.resume()
    assert f.on_chunk(4.0, NAMES, *chunk(4.0), None, 4.0) == ACCEPTED
    ts2, q2, v2, states2, _ = run(f, 4.0, 4.5)
    assert states2[-1] == STATE_FOLLOWING
    assert_within_limits(cfg, q2, v2, q_start=cmd[-1])


def test_normal_lag_never_trips_tracking_supervision():
    # The arm 20 ms behind the command at full speed: 2 rad/s x 0.02 s = 0.04 rad < 0.25 rad.
    f = Follower(make_cfg(execution_mode='latest', watchdog_timeout_s=5.0))
    f.start(wave([0.0])[0], 0.0)
    ts, arm, cmd, states, _ = _closed_loop_with_a_dead_controller(f, 9.0, 9.0, 3.0,
                                                                  delay_steps=10)
    assert f.tracking_faults == 0 and not np.any(states == STATE_HOLDING)
    assert np.max(np.abs(arm - cmd)) > 0.005   # it did lag


def test_tracking_fault_cleared_by_resume_and_supervision_off_with_zero_tolerance():
    f = Follower(make_cfg(tracking_tolerance_rad=0.0))
    f.start([0.0, 0.0], 0.0)
    for k in range(100):
        assert not f.supervise([0.9, 0.0], k * 0.01)
    f = Follower(make_cfg(tracking_tolerance_rad=0.1, tracking_timeout_s=0.05))
    f.start([0.0, 0.0], 0.0)
    trips = [f.supervise([0.5, 0.0], k * 0.01) for k in range(10)]
    assert trips.count(True) == 1 and f.state == STATE_HOLDING
    np.testing.assert_allclose(f.command[0], [0.5, 0.0])   # holds where the arm is
    f.resume()
    assert not f.tracking_fault
    assert f.on_chunk(0.1, NAMES, *chunk(0.1), None, 0.1) == ACCEPTED


def test_joint_states_that_stop_hold_the_arm():
    f = Follower(make_cfg(execution_mode='latest', watchdog_timeout_s=5.0,
                          joint_state_timeout_s=0.2))
    f.start(wave([0.0])[0], 0.0)
    run(f, 0.0, 0.5, [(0.0, 0.0, NAMES, *chunk(0.0), None)])
    assert f.state == STATE_FOLLOWING
    assert not f.supervise_stale(0.5, 0.35) and not f.supervise_stale(0.5, math.nan)
    q_before = f.command[0].copy()
    assert f.supervise_stale(0.5, 0.25)             # last joint state 0.25 s ago
    assert f.state == STATE_HOLDING and f.hold_reason == 'joint_states_stale'
    assert f.tracking_faults == 1 and not f.supervise_stale(0.6, 0.25)   # latched, counted once
    ts, q, v, states, _ = run(f, 0.5, 1.0)          # brakes within the limits from the command
    assert_within_limits(f.cfg, q, v, q_start=q_before)
    assert np.all(v[-10:] == 0.0)
    assert f.on_chunk(1.0, NAMES, *chunk(1.0), None, 1.0) == 'tracking_fault'
    f.resume()
    assert f.on_chunk(1.0, NAMES, *chunk(1.0), None, 1.0) == ACCEPTED


# ------------------------------------------------------------------ start outside the limits

@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=1, max_size=30),
       st.floats(0.0, 0.3), st.floats(0.0, 0.3), st.booleans())
def test_limiter_started_outside_the_limits_only_moves_inward(targets, out0, out1, nan_in):
    """An arm parked between the configured limits and the hardware's (robot configs keep 0.1-0.2 rad
    of margin): the first command is where the arm is (clipping would be a step of up to the
    margin), the joint never goes further out, re-enters within vmax/amax and then stays inside."""
    lower, upper, vmax, amax, dt = np.array([-1.0, -1.0]), np.array([1.0, 1.0]), \
        np.array([2.0, 0.5]), np.array([10.0, 3.0]), 0.002
    lim = Limiter(lower, upper, vmax, amax, dt)
    q0 = np.array([1.0 + out0, -1.0 - out1])
    lim.reset(q0)
    np.testing.assert_array_equal(lim.q, q0)
    q, v = drive(lim, targets, nan_in, 20)
    assert np.all(q[:, 0] <= q0[0] + EPS) and np.all(q[:, 1] >= q0[1] - EPS), 'further out'
    assert np.all(np.abs(v) <= vmax + EPS)
    vel = np.diff(q, axis=0) / dt
    assert np.all(np.abs(vel) <= vmax * (1 + 1e-9) + EPS)
    assert np.all(np.abs(np.diff(np.vstack([np.zeros(2), vel]), axis=0)) <= amax * dt * (1 + 1e-6) + EPS)
    for j in range(2):
        inside = (q[:, j] >= lower[j] - EPS) & (q[:, j] <= upper[j] + EPS)
        if inside.any():
            assert inside[int(np.argmax(inside)):].all(), 'left the limits after entering them'


def test_follower_started_outside_the_limits_moves_in_smoothly():
    cfg = make_cfg(execution_mode='latest', watchdog_timeout_s=2.0)   # [-1, 1], [-2, 0.5]
    f = Follower(cfg)
    q0 = np.array([1.15, 0.6])                       # 0.15 and 0.1 rad beyond the upper limits
    f.start(q0, 0.0)
    ts, q, v, states, _ = run(f, 0.0, 0.2)
    np.testing.assert_array_equal(q, np.tile(q0, (len(ts), 1)))   # idle: holds where it is
    t = np.arange(16) * 0.1
    inside = np.tile([0.9, 0.4], (16, 1))
    assert f.on_chunk(0.2, NAMES, t, inside, None, 0.2) == ACCEPTED
    ts, q2, v2, states, _ = run(f, 0.2, 1.5)
    qq = np.vstack([q0, q2])
    vel = np.diff(qq, axis=0) / cfg.period_s
    assert np.all(np.abs(vel) <= cfg.vmax * (1 + 1e-9) + EPS)
    assert np.all(np.abs(np.diff(np.vstack([np.zeros(2), vel]), axis=0))
                  <= cfg.amax * cfg.period_s * (1 + 1e-6) + EPS)
    assert np.all(qq <= q0 + EPS)
    assert np.all(states == STATE_FOLLOWING)
    np.testing.assert_allclose(q2[-1], [0.9, 0.4], atol=1e-6)


# ------------------------------------------------------------------ speed scaling

def ramp_chunk(stamp, slope=0.2, n=40, dt=0.1):
    t = np.arange(n) * dt
    return t, np.stack([slope * (stamp + t), -0.5 * slope * (stamp + t)], axis=1)


def test_speed_scaling_stretches_the_plan_in_time():
    """UR's slider at 50 %: a chunk is executed over twice its duration (plan time t / 2 at
    clock time t); at 100 % as planned. The limits hold."""
    cfg = make_cfg(execution_mode='latest', watchdog_timeout_s=5.0)
    t, pos = ramp_chunk(0.0, n=40)             # joint 1 at 0.2 rad/s over 4 s
    for scaling in (1.0, 0.5):
        f = Follower(cfg)
        f.start([0.0, 0.0], 0.0)
        f.set_speed_scaling(scaling)
        assert f.on_chunk(0.0, NAMES, t, pos, None, 0.0) == ACCEPTED
        ts, q, v, states, _ = run(f, 0.0, 3.0)
        assert_within_limits(cfg, q, v, q_start=np.zeros(2))
        assert np.all(states == STATE_FOLLOWING)
        late = ts > 0.5                         # after the start transient
        np.testing.assert_allclose(q[late, 0], 0.2 * scaling * ts[late], atol=1e-3)
        np.testing.assert_allclose(q[late, 1], -0.1 * scaling * ts[late], atol=1e-3)


def test_speed_scaling_zero_stands_still_and_resumes():
    """At 0 (a paused program) the command brakes within the limits and stands while chunks keep
    coming (no watchdog hold: the policy is alive); back at 100 % it moves on."""
    cfg = make_cfg(execution_mode='latest', watchdog_timeout_s=1.5)
    f = Follower(cfg)
    f.start([0.0, 0.0], 0.0)
    t, pos = ramp_chunk(0.0, slope=0.3, n=12)
    assert f.on_chunk(0.0, NAMES, t, pos, None, 0.0) == ACCEPTED
    ts, q, v, _, _ = run(f, 0.0, 1.0)
    assert q[-1, 0] > 0.25
    f.set_speed_scaling(0.0)
    # Chunks keep coming (the policy does not know): each is placed at the plan time of its stamp.
    chunks = [(1.0 + 0.1 * k, 1.0 + 0.1 * k, NAMES, *ramp_chunk(1.0 + 0.1 * k, slope=0.3, n=10), None)
              for k in range(10)]
    ts2, q2, v2, states2, results = run(f, 1.0, 2.0, chunks)
    assert all(r == ACCEPTED for r in results)
    assert np.all(states2 == STATE_FOLLOWING)                 # no watchdog hold
    stopped = ts2 > 1.0 + cfg.vmax[0] / cfg.amax[0] + 0.05    # braked within the limits
    assert np.ptp(q2[stopped], axis=0).max() < 1e-9
    f.set_speed_scaling(1.0)
    ts3, q3, v3, _, _ = run(f, 2.0, 3.0, [(2.0, 2.0, NAMES, *ramp_chunk(2.0, slope=0.3, n=10), None)])
    assert_within_limits(cfg, np.vstack([q, q2, q3]), np.vstack([v, v2, v3]), q_start=np.zeros(2))
    assert q3[-1, 0] > q2[-1, 0] + 0.2                        # moving at the planned speed again


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunk_event, min_size=0, max_size=20),
       st.lists(st.tuples(st.floats(0.0, 3.0), st.floats(-0.5, 1.5)), max_size=8))
def test_limits_hold_whatever_the_speed_scaling_does(events, scalings):
    """Speed scaling jumping anywhere in [0, 1] (and outside, clipped) never breaks the limits
    per clock second (forward commands: nothing downstream scales)."""
    cfg = make_cfg(execution_mode='receding_horizon')
    f = Follower(cfg)
    f.start(np.zeros(2), 0.0)
    chunks = sorted((build_chunk(ev) for ev in events), key=lambda c: c[0])
    q, v, _ = _run_scaled(f, chunks, sorted(scalings), 3.5, f.dt)
    assert 0.0 <= f.speed_scaling <= 1.0
    assert_within_limits(cfg, q, v, q_start=np.zeros(2))


def test_preview_runs_on_plan_time_under_speed_scaling():
    """The joint_trajectory output's preview is what step() will command at those times."""
    cfg = make_cfg(execution_mode='latest')
    f = Follower(cfg)
    f.start([0.0, 0.0], 0.0)
    f.set_speed_scaling(0.4)
    t, pos = ramp_chunk(0.0, slope=0.5, n=15)
    assert f.on_chunk(0.0, NAMES, t, pos, None, 0.0) == ACCEPTED
    run(f, 0.0, 0.6)
    now = 0.6 - f.dt
    times = now + np.array([0.02, 0.04, 0.1])
    pq, _ = f.preview(now, times)
    ts, q, _, _, _ = run(f, 0.6, 0.72)
    for tk, qk in zip(times, pq):
        np.testing.assert_allclose(q[int(round((tk - 0.6) / f.dt))], qk, atol=2e-3)


def _run_scaled(f, chunks, scalings, t_end, dt):
    """Step f with chunks and (time, factor) changes; returns commands and plan-time steps."""
    qs, vs, steps = [], [], []
    ci = si = 0
    tau_prev = None
    for k in range(int(t_end / dt)):
        now = k * dt
        while si < len(scalings) and scalings[si][0] <= now:
            f.set_speed_scaling(scalings[si][1])
            si += 1
        while ci < len(chunks) and chunks[ci][0] <= now:
            _, stamp, names, t, pos, vel = chunks[ci]
            f.on_chunk(stamp, names, t, pos, vel, now)
            ci += 1
        q, v, _ = f.step(now)
        tau = f.plan_time(now)
        steps.append(0.0 if tau_prev is None else tau - tau_prev)
        tau_prev = tau
        qs.append(q.copy())
        vs.append(v.copy())
    return np.array(qs), np.array(vs), np.array(steps)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunk_event, min_size=0, max_size=20),
       st.lists(st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 1.0)), max_size=8))
def test_scaled_time_output_keeps_the_limits_in_plan_time(events, scalings):
    """scaled_time_output (the joint_trajectory output: the controller runs the command's time):
    per unit of plan time the command keeps vmax and amax, and a period in which plan time does
    not advance (factor 0) leaves the command where it is."""
    cfg = make_cfg(execution_mode='receding_horizon', scaled_time_output=True)
    f = Follower(cfg)
    f.start(np.zeros(2), 0.0)
    chunks = sorted((build_chunk(ev) for ev in events), key=lambda c: c[0])
    q, v, dtau = _run_scaled(f, chunks, sorted(scalings), 3.5, f.dt)
    assert np.all(q >= cfg.lower - EPS) and np.all(q <= cfg.upper + EPS)
    assert np.all(np.abs(v) <= cfg.vmax * (1 + 1e-9) + EPS)
    dq = np.abs(np.diff(q, axis=0))
    d = dtau[1:, None]
    assert np.all(dq <= cfg.vmax * d * (1 + 1e-6) + 1e-12), 'velocity per plan second'
    still = dtau[1:] < 1e-9
    assert np.all(dq[still] == 0.0)
    moving = (dtau[1:] > 1e-9) & (dtau[:-1] > 1e-9)
    dv = np.abs(np.diff(v, axis=0))
    assert np.all(dv[moving] <= cfg.amax * d[moving] * (1 + 1e-6) + 1e-9), 'acceleration'


def test_scaled_time_output_at_full_speed_is_the_unscaled_follower():
    """At a factor of 1 plan time is the clock: both modes give the same commands, bit for bit."""
    chunks = [(0.1 * k, 0.1 * k - 0.03, NAMES, *chunk(0.1 * k - 0.03), None) for k in range(20)]
    out = []
    for scaled in (False, True):
        f = Follower(make_cfg(execution_mode='temporal_ensemble', scaled_time_output=scaled))
        f.start(wave([0.0])[0], 0.0)
        ts, q, v, _, _ = run(f, 0.0, 2.5, chunks)
        pq, pv = f.preview(2.5 - f.dt, 2.5 + np.array([0.02, 0.04]))
        out.append((q, v, pq, pv))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_plan_time_of_a_past_stamp_uses_the_factor_of_that_time():
    """A chunk stamped before the factor changed is placed with the factor it had then."""
    f = Follower(make_cfg())
    f.start(np.zeros(2), 0.0)
    f.set_speed_scaling(0.0)
    run(f, 0.0, 1.0)                     # paused for 1 s: plan time stays at 0
    f.set_speed_scaling(1.0)
    run(f, 1.0, 1.2)                     # then 0.2 s at full speed
    assert f.plan_time(0.5) == pytest.approx(0.0, abs=2 * f.dt)
    assert f.plan_time(1.1) == pytest.approx(0.1, abs=2 * f.dt)


def test_jerk_rms_is_on_the_commands_own_times_and_boundary_steps_measure_the_plan_change():
    """pop_jerk: the RMS of (a_k - a_{k-1}) / dt over the joints and steps, as the command stream
    itself gives it; pop_boundary_step: how far each chunk entry moves the plan one chunk step
    ahead (0 for a chunk that continues the plan, the offset for a switch, less for an ensemble
    member)."""
    f = started(execution_mode='latest', blend_window_s=0.0, watchdog_timeout_s=5.0)
    f.pop_jerk()
    _, q, v, _, _ = run(f, 0.0, 1.0, [constant(0.0, 16, 0.3)])
    mx, rms, n = f.pop_jerk()
    a = np.diff(np.vstack([[0.0, 0.0], v]), axis=0) / f.dt       # the steps' accelerations
    j = np.diff(np.vstack([[0.0, 0.0], a]), axis=0) / f.dt
    assert n == j.size and rms == pytest.approx(np.sqrt(np.mean(j ** 2)), rel=1e-9)
    assert mx == pytest.approx(np.abs(j).max(), rel=1e-9)
    assert math.isnan(f.pop_jerk()[1])                            # nothing since: no RMS

    def boundary(mode, second, until=0.7):
        f = started(execution_mode=mode, blend_window_s=0.0, watchdog_timeout_s=5.0,
                    n_action_steps=8)
        run(f, 0.0, 0.5, [constant(0.0, 16, 0.1)])
        assert math.isnan(f.pop_boundary_step())                  # entered from idle: no step
        run(f, 0.5, until, [second])
        return f.pop_boundary_step()
    assert boundary('latest', constant(0.5, 16, 0.1)) == pytest.approx(0.0, abs=1e-9)
    assert boundary('latest', constant(0.5, 16, 0.12)) == pytest.approx(0.02, abs=1e-6)
    assert 0.0 < boundary('temporal_ensemble', constant(0.5, 16, 0.12)) < 0.02
    assert boundary('rtc', constant(0.5, 16, 0.1)) == pytest.approx(0.0, abs=1e-9)
    # receding horizon enters the pending chunk at the switch (t = 0.8 s), inside step()
    assert math.isnan(boundary('receding_horizon', constant(0.5, 16, 0.12), until=0.75))
    assert boundary('receding_horizon', constant(0.5, 16, 0.12), until=0.9) == \
        pytest.approx(0.02, abs=1e-6)
