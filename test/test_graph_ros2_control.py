"""The follower against the REAL ros2_control (integration tests, marked `ros2_control`).

Processes: ros2_control_node (controller_manager at 500 Hz with ros2_control's own mock hardware,
mock_components/GenericSystem, on the embedded arm's URDF), the real joint_state_broadcaster,
forward_command_controller and joint_trajectory_controller (Jazzy/Kilted default parameters:
dp_sim/config/mock_controllers.yaml), loaded by controller_manager's own spawner
(dp_bringup.mock_arm), and follower_node with the embedded arm's robot config. Nothing of
ros2_control is imitated: where it is not installed (`make ros2-control`, or an apt ROS 2 with
ros2_control sourced) the tests skip and say so; `.ci/run` builds it first.

Input: policy chunks replayed from a bag recorded in a closed-loop run of the embedded task
(test/data/reach_policy_chunks: 3 episodes of models/reach_image.ckpt, `dp_eval closed-loop
--record`, /policy_node/trajectory and /task_status kept), re-stamped onto the wall clock with
their recorded spacing and stamp-to-arrival latency. The mock arm starts where the simulated arm
started (the URDF's initial values), so the first chunks fit it.

One run per output mode (joint_trajectory: with each jtc_stamp) checks, from /joint_states of the
real broadcaster:
- the controller executes what the follower sends, and no trajectory is rejected
  (joint_trajectory_controller rejects a trajectory whose last point moves unless
  allow_nonzero_velocity_at_trajectory_end, false by default since Jazzy);
- the arm follows the policy's chunks (tolerances below, measured on this machine);
- what the follower sends keeps its velocity limit (2 rad/s), and the arm never moves faster
  than the URDF's (3 rad/s, the controller manager's limit);
- the controller switched off mid-run (controller_manager's switch_controller service, as
  `ros2 control switch_controllers --deactivate` calls it) and on again: the follower stops
  commanding, the arm holds, then the follower resumes from the measured position without a jump;
- the policy stops (end of the bag): the follower's watchdog brakes and holds, which the
  controller shows (JTC: its ~/controller_state reference at rest).
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from dp_bringup.mock_arm import find_installation, missing_reason  # noqa: E402

INSTALLATION = find_installation()
pytestmark = [pytest.mark.graph, pytest.mark.ros2_control,
              pytest.mark.skipif(INSTALLATION is None, reason=INSTALLATION is None and
                                 missing_reason() or '')]

from dp_common.stamps import stamp_to_sec  # noqa: E402
from dp_eval.controllers import (RATE_HZ, SPEED_SCALING_TOPIC, ControllerRig,  # noqa: E402
                                 accepted_chunks, chunk_error, core_error, load_chunks, stamp_key,
                                 step_velocities, steps_per_cycle)

ROOT = Path(__file__).resolve().parents[1]
BAG = ROOT / 'test' / 'data' / 'reach_policy_chunks'
VMAX = 2.0            # config/robots/embedded_arm.yaml max_velocity_rad_s
URDF_VMAX = 3.0       # dp_sim/description/arm.urdf <limit velocity>
DEACTIVATE_AT_S = 5.5  # replay time of the switch-off (inside the second episode)
DEACTIVATED_S = 1.0
# Tolerances (rad), from runs on the 2-core machine (README "The real ros2_control"): the arm vs
# the follower core on the same chunks, and vs the newest chunk at the same time (the follower
# blends chunks and keeps the limits, so it lags a chunk that jumps).
CORE_MEDIAN_TOL = 0.005
CORE_P80_TOL = 0.03
MAX_LAG_S = 0.25      # how far behind the core's plan a stall may leave the arm (see the test)
SCALED_MEDIAN_TOL = 0.012     # the same at 50 % speed scaling (see the test)
CHUNK_MEDIAN_TOL = 0.08
CHUNK_P95_TOL = 0.40


def refusals(cm_log: str) -> list:
    """joint_trajectory_controller's log lines for a trajectory it refused."""
    return [line for line in cm_log.splitlines() if re.search(
        r'not zero|ends in the past|[Rr]ejected|Can\'t accept|Invalid|'
        r'don\'t match|not strictly increasing', line)]


def describe_core_error(err) -> str:
    p95, p99 = np.percentile(err, [95, 99])
    return (f'median {np.median(err):.4f} rad, p80 {np.percentile(err, 80):.4f} rad, p95 '
            f'{p95:.4f} rad, p99 {p99:.4f} rad, max {err.max():.4f} rad over {len(err)} joint '
            f'states; within 0.01/0.02/0.05 rad: {np.mean(err < 0.01):.3f}/'
            f'{np.mean(err < 0.02):.3f}/{np.mean(err < 0.05):.3f}')


def late_windows(rig, err, t_stop, tol=0.02) -> list:
    """Where (s after the first chunk) the arm was more than tol off the core: for a failure."""
    stamps = np.array([s for _, s, _, _ in rig.joint_states])
    t0 = rig.published[0][0]
    i0 = int(np.argmax(stamps >= t0 - 0.05))
    t = stamps[(stamps > stamps[i0] + 0.01) & (stamps < t_stop - 0.01)] - t0
    bad = t[err > tol]
    if not len(bad):
        return []
    breaks = np.nonzero(np.diff(bad) > 0.05)[0]
    starts, ends = np.r_[bad[0], bad[breaks + 1]], np.r_[bad[breaks], bad[-1]]
    return [(round(a, 3), round(b, 3)) for a, b in zip(starts, ends)]


def stopped_cleanly(rig, rc, tmp_path, late_allowed: int = 0) -> str:
    """follower_node exited 0 without a traceback, and the real controller refused nothing it
    sent (but up to `late_allowed` clock-stamped trajectories that reached it after their end:
    see the test); returns the controller manager's log."""
    logs = rig.logs()
    assert rc == 0, f'follower_node exited with {rc}\n{logs}'
    assert 'Traceback' not in logs, logs
    cm_log = (tmp_path / 'ros2_control_node.log').read_text()
    refused = refusals(cm_log)
    late = [line for line in refused if 'ends in the past' in line]
    if late:
        print(f'{len(late)} clock-stamped trajectories reached the controller after their end: '
              + '; '.join(late[:3]))
    other = [line for line in refused if 'ends in the past' not in line]
    assert not other and len(late) <= late_allowed, '\n'.join(refused[:20])
    return cm_log


@pytest.mark.parametrize('output_mode,jtc_stamp', [
    ('forward_command', 'zero'), ('joint_trajectory', 'zero'), ('joint_trajectory', 'clock')],
    ids=['forward_command', 'joint_trajectory-zero', 'joint_trajectory-clock'])
def test_follower_drives_the_real_controllers(tmp_path, output_mode, jtc_stamp):
    chunks, episode_starts = load_chunks(BAG)
    rig = ControllerRig(tmp_path, output_mode, follower_params={'jtc_stamp': jtc_stamp})
    try:
        rig.start()
        home = rig.joint_states[-1][2].copy()
        np.testing.assert_allclose(home, chunks[0][4][0], atol=0.2)   # the bag starts here

        switched = {}

        def switch_off_and_on():   # a thread: the replay goes on meanwhile
            switched['off_request'] = time.time()
            rig.switch('deactivate', rig.controller)
            switched['off'] = time.time()
            time.sleep(DEACTIVATED_S)
            switched['on_request'] = time.time()
            rig.switch('activate', rig.controller)
            switched['on'] = time.time()

        switcher = threading.Thread(target=switch_off_and_on, daemon=True)

        def on_time(t):
            if t >= DEACTIVATE_AT_S and not switcher.is_alive() and not switched:
                switcher.start()

        t0 = rig.replay(chunks, on_time)
        t_end = time.time()
        switcher.join(10.0)
        assert 'on' in switched, 'the controller was not switched back on during the replay'
        # The policy stops: watchdog (0.5 s) and braking, then the hold is seen at the controller.
        if output_mode == 'joint_trajectory':
            rig.watch_jtc_state()
        rig.wait_for(lambda: rig.status.state_label == 'holding', 'watchdog hold', 5.0)
        time.sleep(1.0)
        t_hold = time.time()
        time.sleep(0.6)
    finally:
        rc = rig.stop()
    # jtc_stamp clock places each trajectory on the clock: one that reaches the controller after
    # its last point (0.12 s) is refused ("ends in the past") and the arm holds the previous one;
    # that needs a delivery stall of the controller manager's topic thread over 0.1 s (seen once in
    # a CI-like run on the loaded 2-core machine: 200 ms). Counted, bounded; with jtc_stamp zero
    # (the default) nothing may be refused.
    cm_log = stopped_cleanly(rig, rc, tmp_path, late_allowed=3 if jtc_stamp == 'clock' else 0)
    # The Jazzy+ controller manager clamps every command to the URDF's limits (3 rad/s here)
    # and logs it (at most once a second). What the follower sends keeps its own 2 rad/s
    # (checked below, message by message); clamps come from delivery: the controllers' topic
    # subscriptions run in the controller manager's non-real-time executor thread, which on this
    # 2-core machine competes with the follower's real-time threads and this test. Forward
    # commands: two of them landing in one controller cycle make a double step, clamped. JTC:
    # each rolling trajectory starts from the arm's state when the controller reads it; one
    # delivered 10 ms later than the one before makes its first 20 ms segment 1.5x the planned
    # speed, a stall longer than the horizon (0.1 s) ends in the braking tail and the next one
    # catches up. Measured: idle machine 0-1 per JTC run (bench_controllers), 0-3 with two busy
    # loops beside, 5 on a loaded CI run. A follower whose trajectories themselves demanded more
    # than the limits would clamp in every second of the run.
    clamped = [line for line in cm_log.splitlines() if 'out of limits' in line]
    print(f'{output_mode}: controller manager limit clamps logged (throttled): {len(clamped)}')
    if output_mode == 'joint_trajectory':
        assert len(clamped) <= 0.5 * (t_end - t0), '\n'.join(clamped[:10])

    js = rig.joint_states
    # Times of the joint states: the broadcaster's stamps (the controller manager's clock: the
    # system clock of this host, as time.time() here).
    recv = np.array([st for _, st, _, _ in js])
    q = np.array([q for _, _, q, _ in js])
    assert len(js) > 0.5 * RATE_HZ * (t_end - t0), f'{len(js)} joint states only'

    # --- what the follower sent keeps its 2 rad/s: each rolling trajectory's points (velocities
    # and the mean velocities between them, the braking tail included). (Forward commands carry
    # no time: after a late wake-up the control thread steps the missed periods and publishes
    # once, so publish times do not measure their speed; the core's property tests do, and the
    # arm's states equal them, below.)
    if output_mode == 'joint_trajectory':
        cmd_speed = np.array([max(np.max(np.abs(vel)), np.max(
            np.abs(np.diff(pos, axis=0)) / np.diff(tfs)[:, None]))
            for _, _, tfs, pos, vel, _ in rig.trajectories])
        print(f'{output_mode}: fastest joint in what the follower sent: {cmd_speed.max():.3f} '
              'rad/s')
        assert cmd_speed.max() <= 1.001 * VMAX, cmd_speed.max()

    # --- and the arm: no step larger than the URDF's velocity limit (3 rad/s) allows, which the
    # Jazzy+ controller manager enforces on every command, from the broadcaster's samples:
    # - per controller cycle: 3 rad/s x the cycle's measured period (steps_per_cycle), which
    #   the broadcaster's stamps (taken after the hardware read) show to within the read's
    #   jitter (measured: up to 12% over the nominal step on an idle machine);
    # - over 100 ms. Where the follower's 2 rad/s is exceeded (delivery stalls made up later,
    #   see the clamps above; measured 2.0-2.1 rad/s idle, up to 3.0 rad/s under load) it is the
    #   controller manager's limit that holds.
    cycle = 1.0 / RATE_HZ
    steps = steps_per_cycle(js)
    vel100, _ = step_velocities(js, min_dt=0.1)
    print(f'{output_mode}: largest step per cycle {steps.max():.5f} rad, max joint speed over '
          f'100 ms {vel100.max():.3f} rad/s')
    step_limit = URDF_VMAX * cycle
    assert steps.max() <= 1.25 * step_limit, (steps.max(), step_limit)
    assert vel100.max() <= 1.05 * URDF_VMAX, f'max joint speed {vel100.max():.3f} rad/s'

    # --- the controller executes what the follower sends
    if output_mode == 'forward_command':
        cmd_recv = np.array([c[0] for c in rig.commands])
        cmds = np.array([c[1] for c in rig.commands])
        # The mock's position state is the command it was given: each measured position is one
        # of the commands received shortly before (exact: no interpolation in between), except
        # where the controller manager clamped a step (a state on the way to the command; 3.6-4.5%
        # of the states with two busy loops beside, up to 0.042 rad behind: a 20 ms backlog).
        errs = []
        for r, qq in zip(recv, q):
            lo, hi = np.searchsorted(cmd_recv, [r - 0.1, r + 0.01])
            if hi > lo:
                errs.append(np.min(np.max(np.abs(cmds[lo:hi] - qq), axis=1)))
        errs = np.array(errs)
        exact = np.mean(errs < 1e-9)
        print(f'forward_command: joint states equal to a command: {100 * exact:.1f}%, '
              f'max difference {errs.max():.5f} rad')
        assert len(errs) > 0.5 * len(q) and exact > 0.9 and errs.max() < 0.1 * VMAX, \
            (exact, errs.max())
    else:
        # The follower's rolling trajectories went out at jtc_rate_hz (50 Hz), stamped zero
        # (jtc_stamp default: the controller starts each when it reads it) or with the
        # follower's clock at the command instant, just before it published them; where the arm
        # went is checked against the follower core just below.
        assert len(rig.trajectories) > 0.5 * 50.0 * (t_end - t0)
        lead = np.array([t[5] - t[1] for t in rig.trajectories])
        if jtc_stamp == 'zero':
            assert all(t[1] == 0.0 for t in rig.trajectories)
        else:
            assert np.all((lead >= 0.0) & (lead < 0.02)), (lead.min(), lead.max())

    # --- the arm goes where the follower's core decides on these chunks: the ROS-free Follower
    # with the same configuration, fed the replayed chunks, vs the broadcaster's positions (one
    # controller cycle later), until the switch-off. Differences: chunk delivery times (a few
    # ms shift a blend) and the real loop's timing.
    before = [stamp_key(c[1]) for c in rig.published if c[0] < switched['off_request']]
    entered = accepted_chunks(rig)
    core_err = core_error(rig, switched['off_request'])
    late_err = core_error(rig, switched['off_request'], max_lag_s=MAX_LAG_S)
    print(f'{output_mode}: {sum(k in entered for k in before)} of {len(before)} chunks entered the '
          f'core, as follower_node accepted them ({sum(k in rig.accepted for k in before)} named '
          'in its status)')
    print(f'{output_mode}: {describe_core_error(core_err)}; allowing the arm up to '
          f'{1000 * MAX_LAG_S:.0f} ms behind: {describe_core_error(late_err)}')
    assert len(core_err) > 0.3 * RATE_HZ * DEACTIVATE_AT_S
    # The median: the arm on the core's plan. p80 allowing a lag: stalls of the loaded 2-core
    # machine (commands delivered late to the controllers, whose subscriptions run in the
    # controller manager's non-real-time threads; the follower's chunk callback held up) take the
    # arm off the plan for tens to hundreds of ms each: p95 0.004-0.011 rad on an idle machine;
    # with two busy loops beside, 3 of 20 runs had an arm that stood still for 67-205 ms while
    # the trajectories moved (p99 0.19 rad; 0.015 allowing the lag); a CI run had p80 0.14 rad.
    p80 = np.percentile(late_err, 80)
    assert np.median(core_err) < CORE_MEDIAN_TOL and p80 < CORE_P80_TOL, \
        (np.median(core_err), p80, late_windows(rig, core_err, switched['off_request']))

    # --- and the policy's chunks (the newest chunk at each instant; the follower blends and
    # averages chunks and keeps the limits, so it lags a chunk that jumps), away from the episode
    # starts (the chunks jump back to the home pose) and the switch-off: printed, loose bounds.
    err = chunk_error(rig, chunks, episode_starts, t0, t_end,
                      excluded=[(switched['off_request'], switched['on'] + 1.5)])
    assert len(err) > 0.3 * RATE_HZ * 3.0
    med, p95 = np.median(err), np.percentile(err, 95)
    print(f'{output_mode}: arm vs newest chunk: median {med:.4f} rad, p95 {p95:.4f} rad, '
          f'max {err.max():.4f} rad over {len(err)} joint states')
    assert med < CHUNK_MEDIAN_TOL and p95 < CHUNK_P95_TOL, (med, p95)

    # --- switched off: the follower stops commanding, the arm holds; on again: no jump
    sts = rig.statuses
    assert any(m.controller_state == 'inactive' for _, m in sts), 'inactive never reported'
    assert max(m.controller_deactivations for _, m in sts) == 1
    off, on = switched['off'], switched['on_request']
    # From when the follower reported the controller inactive (its status stamp, after it knew;
    # the service answered before the activity message reached it).
    known = min(stamp_to_sec(m.header.stamp) for _, m in sts
                if m.controller_state == 'inactive')
    settle = max(off, known) + 0.005
    held = q[(recv > settle) & (recv < on)]
    assert len(held) > 10
    assert np.max(np.ptp(held, axis=0)) < 1e-9, 'the arm moved while the controller was off'
    # Nothing sent meanwhile (receive times of the middleware, this host's clock).
    if output_mode == 'forward_command':
        sent = [c[0] for c in rig.commands if settle < c[0] < on]
        first = [c[1] for c in rig.commands if c[0] > on][:1]
        first_tol = 2 * VMAX / RATE_HZ          # the start holds the measured position
    else:
        sent = [t[0] for t in rig.trajectories if settle < t[0] < on]
        first = [t[3][0] for t in rig.trajectories if t[0] > on][:1]
        first_tol = 1.1 * VMAX * 0.02 + 0.002   # its first point is 20 ms ahead
    assert not sent, f'{len(sent)} commands sent to an inactive controller'
    # On again: the first command starts from where the arm stood.
    assert first, 'no command after the controller came back'
    assert np.max(np.abs(first[0] - held[-1])) <= first_tol, (first[0], held[-1])
    after = (recv > on) & (recv < switched['on'] + 2.0)
    vel_after, _ = step_velocities([j for j, a in zip(js, after) if a], min_dt=0.1)
    assert vel_after.max() <= 1.1 * VMAX, 'jump after the controller came back'
    assert any(m.state_label == 'following' for r, m in sts if r > switched['on']), \
        'the follower did not resume'

    # --- the policy stopped: watchdog hold, the arm at rest, seen in the controller's state
    assert max(m.watchdog_trips for _, m in sts) >= 1
    rest = (recv > t_hold)
    assert rest.sum() > 50
    assert np.max(np.ptp(q[rest], axis=0)) < 1e-9
    assert np.max(np.abs(np.array([v for _, _, _, v in js])[rest])) < 1e-6
    if output_mode == 'joint_trajectory':
        late = [(p, v) for r, _, p, v in rig.jtc_states if r > t_hold]
        assert len(late) > 50, 'no controller_state from joint_trajectory_controller'
        ref_q = np.array([p for p, _ in late])
        ref_v = np.array([v for _, v in late])
        assert np.max(np.ptp(ref_q, axis=0)) < 1e-9 and np.max(np.abs(ref_v)) < 1e-9


def test_speed_scaling_with_the_real_joint_trajectory_controller(tmp_path):
    """UR's pendant slider at 50 %: the real joint_trajectory_controller scales its trajectory
    time (its ~/speed_scaling_input, as the UR scaled controller does from the hardware), and
    the follower reads the scaling where UR's speed_scaling_state_broadcaster publishes it
    (percent). The arm then goes where the follower core goes at half speed: the follower's
    command and its rolling trajectories run on plan time, which the controller advances at the
    factor itself; none is refused, no tracking fault. A follower that ignored the scaling would plan at full
    speed while each trajectory ran at half of it (the arm neither at the core's half-speed
    plan nor at the full-speed one)."""
    chunks, _ = load_chunks(BAG)
    first = [c for c in chunks if c[0] - chunks[0][0] < 4.0]
    rig = ControllerRig(tmp_path, 'joint_trajectory',
                        follower_params={'speed_scaling_topic': SPEED_SCALING_TOPIC})
    try:
        rig.start()
        rig.set_speed_scaling(50.0)
        rig.wait_for(lambda: rig.status.speed_scaling == 0.5, 'the follower at 50 %', 10.0)
        t_scaled = time.time()
        rig.replay(first)
        t_end = time.time()
        time.sleep(0.3)
    finally:
        rc = rig.stop()
    cm_log = stopped_cleanly(rig, rc, tmp_path)
    assert 'New scaling factor will be 0.5' in cm_log, 'the controller did not take the scaling'

    assert all(m.tracking_faults == 0 for _, m in rig.statuses)
    # The follower commands in plan time, the controller's trajectory time: the first point is
    # 20 ms of it ahead, and a trajectory goes out every 20 ms of it (every 40 ms of the clock).
    sent = [t for t in rig.trajectories if t_scaled + 0.05 < t[0] < t_end]
    assert sent and all(abs(t[2][0] - 0.02) < 1e-6 for t in sent), sent[0][2]
    assert len(sent) < 0.75 * 50.0 * (t_end - t_scaled - 0.05), len(sent)
    half = core_error(rig, t_end, speed_scaling=0.5)
    full = core_error(rig, t_end, speed_scaling=1.0)
    p80 = np.percentile(core_error(rig, t_end, speed_scaling=0.5, max_lag_s=MAX_LAG_S), 80)
    print(f'speed scaling 50 %: arm vs the core at 50 %: median {np.median(half):.4f} rad, '
          f'p80 {p80:.4f} rad (up to {1000 * MAX_LAG_S:.0f} ms behind it); vs the core at 100 %: median {np.median(full):.4f} rad')
    # Idle machine: median 0.5-1.0 mrad; a run right after other integration tests: 6.1 mrad (p80
    # 20 mrad). The Jazzy+ controller restarts each trajectory from its setpoint, sampled one
    # unscaled period ahead, which the follower's plan time runs at half speed (see
    # test_speed_scaling_jtc.py), and late deliveries widen that. Against the full-speed plan:
    # 0.12 rad.
    assert np.median(half) < SCALED_MEDIAN_TOL and p80 < CORE_P80_TOL, (np.median(half), p80)
    assert np.median(full) > 5 * SCALED_MEDIAN_TOL, 'the arm did not run at half speed'
