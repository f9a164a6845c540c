"""policy_node's scheduling and status accumulation, without ROS (scheduling.py, status.py)."""
import subprocess
import sys

import numpy as np
import pytest

from dp_policy_node.observation import ObservationHistory, Skip
from dp_policy_node.scheduling import (RobotSchedule, TimerTicks, Trigger, robots_starting,
                                       select_batch)
from dp_policy_node.status import StatusBook

NS = 1_000_000_000
T = 1_700_000_000 * NS


def test_modules_do_not_import_rclpy():
    code = ('import sys, dp_policy_node.scheduling, dp_policy_node.status; '
            'assert "rclpy" not in sys.modules')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0


def test_trigger_is_decoded_once():
    assert Trigger('observation', 10.0).grid_ns == NS // 10
    assert Trigger('timer', 10.0).grid_ns == 0 and Trigger('timer', 10.0).period_ns == NS // 10
    with pytest.raises(ValueError):
        Trigger('sometimes', 10.0)


@pytest.mark.parametrize('frame_hz', [100.0, 30.0, 20.0, 15.0, 12.0, 7.0])
def test_observation_grid_keeps_the_policy_rate(frame_hz):
    # RobotSchedule.is_due alone: frames at frame_hz, a policy at 10 Hz. Chunks come at the
    # policy rate on average when frames are faster (at the frame rate when slower), never closer
    # than half a period, and never twice for one frame.
    period = NS // 10
    sched = RobotSchedule(period)
    stamps = np.round(np.arange(0, 20.0, 1.0 / frame_hz) * NS).astype(np.int64) + 123_456_789
    chunks = []
    for t0 in stamps:
        if sched.is_due(int(t0)):
            sched.chunk_published(int(t0))
            chunks.append(t0)
    gaps = np.diff(chunks)
    assert gaps.min() >= period // 2, gaps
    expected = min(frame_hz, 10.0) * 20.0
    assert abs(len(chunks) - expected) <= 2, (len(chunks), expected)


def test_robots_out_of_phase_share_batches_at_the_policy_rate():
    # robots_starting alone: two robots, 30 Hz cameras 15 ms out of phase, a 10 Hz policy. Each
    # frame arrival is a trigger; a robot joins a due one when it is due within half a period.
    period = NS // 10
    robots = [RobotSchedule(period), RobotSchedule(period)]
    frames = sorted((int(k * NS / 30) + i * 15_000_000, i) for i in (0, 1) for k in range(600))
    newest, tried, passes, chunks = [None, None], [None, None], 0, [[], []]
    for t, i in frames:
        newest[i] = t
        fresh = [(robots[j], newest[j]) for j in (0, 1)
                 if newest[j] is not None and newest[j] != tried[j]]
        start = robots_starting(fresh, period)
        if start:
            passes += 1
        for r in start:
            j = robots.index(r)
            tried[j] = newest[j]
            r.chunk_published(newest[j])
            chunks[j].append(newest[j])
    for c in chunks:                                   # 20 s at 10 Hz each
        assert abs(len(c) - 200) <= 2 and np.diff(c).min() >= period // 2, (len(c), np.diff(c))
    assert passes <= 205, passes                       # one batch for both, not one pass each


def history_with(stamps_ns):
    h = ObservationHistory(2, [], 2, 0.1, 0.5)          # state only, 2 observation steps
    for t in stamps_ns:
        assert h.insert_joint_state(t, np.array([t * 1e-9, 0.0]), now_ns=t) == ''
    return h


def test_select_batch_takes_each_new_fresh_observation_once():
    sched = RobotSchedule(0)                             # trigger timer
    h = history_with([T, T + NS // 10])
    ready, skipped = select_batch([('a', sched, h)], T + NS // 10, 0)
    assert [k for k, _, _ in ready] == ['a'] and not skipped
    assert ready[0][1].stamp_ns == T + NS // 10 and ready[0][2] == sched.epoch
    ready, skipped = select_batch([('a', sched, h)], T + NS // 10, 0)   # nothing new: waits
    assert not ready and not skipped


def test_select_batch_says_why_and_forgets_a_restarted_history():
    sched, stale = RobotSchedule(0), history_with([T, T + NS // 10])
    ready, skipped = select_batch([('a', sched, stale)], T + 5 * NS, 0)   # 5 s later: stale
    assert not ready and len(skipped) == 1
    key, skip = skipped[0]
    assert key == 'a' and isinstance(skip, Skip) and sched.last_skip == skip.reason
    sched.tried_t0_ns = T + 10 * NS                      # the history restarted behind it
    ready, _ = select_batch([('a', sched, history_with([T, T + NS // 10]))], T + NS // 10, 0)
    assert ready and sched.tried_t0_ns == T + NS // 10


def test_reset_bumps_the_epoch():
    sched = RobotSchedule(NS // 10)
    sched.chunk_published(T)
    epoch = sched.epoch
    sched.reset()
    assert sched.epoch == epoch + 1 and sched.last_t0_ns is None and sched.due_ns is None
    assert sched.last_skip == 'history reset'


def test_status_book_counts_and_windows():
    book = StatusBook(window=3)
    book.rejected('missing_joint:elbow')
    book.rejected('missing_joint:wrist')
    book.skipped('overrun', 2)
    for lat in (0.01, 0.02, 0.03, 0.04):                # the window keeps the last 3
        book.chunk_published(lat, 0.05)
    snap, elapsed = book.snapshot()
    assert snap.rejected == {'missing_joint': 2} and snap.skipped == {'overrun': 2}
    assert snap.chunks_published == 4 and elapsed > 0 and snap.output_rate_hz > 0
    assert snap.latency_p50_s == pytest.approx(0.03) and snap.latency_max_s == pytest.approx(0.04)
    assert snap.observation_to_publish_p50_s == pytest.approx(0.05)
    snap, _ = book.snapshot()                            # no chunk since: rate 0
    assert snap.output_rate_hz == 0.0 and snap.chunks_published == 4


def test_timer_ticks_keep_their_grid_skip_overruns_and_restart_on_a_jump_back():
    ticks = TimerTicks(100)
    assert ticks.wait_s(1000) == 0                       # the first time seen ticks at once
    assert ticks.ticked(1010) == 0 and ticks.wait_s(1050) == pytest.approx(50e-9)
    assert ticks.wait_s(1100) == 0
    assert ticks.ticked(1350) == 2                       # 1200 and 1300 missed: next at 1400
    assert ticks.wait_s(1350) == pytest.approx(50e-9)
    assert ticks.wait_s(500) == 0                        # clock back by > 2 periods: restart
    assert ticks.ticked(505) == 0 and ticks.next_ns == 600
    ticks.reset()
    assert ticks.wait_s(7) == 0
