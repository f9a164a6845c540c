"""episodes.py: the closed-loop bookkeeping on known streams (no ROS)."""
import math

import numpy as np
import pytest

from dp_eval.episodes import EpisodeTracker, command_jerk, summarize_episodes


def test_command_jerk_of_a_cubic_with_a_coarse_clock():
    # a follower on simulated time: commands at 500 Hz, the clock advances at 100 Hz, so 5
    # commands share a stamp and a position (the plan sampled at that time); q = t^3 -> jerk 6
    stamps = (np.arange(1000) // 5) * 0.01
    q = np.stack([stamps ** 3, -stamps ** 3], 1)
    rms, mx, gaps = command_jerk(stamps, q, dt_s=0.02)
    assert rms == pytest.approx(6.0, rel=0.1) and mx == pytest.approx(6.0, rel=0.2) and gaps == 0
    assert all(math.isnan(v) for v in command_jerk([0, 1], [[0], [1]])[:2])


def test_command_jerk_is_cut_at_reception_gaps():
    # the same cubic with 0.3 s of commands missing (the evaluator did not receive them): the
    # straight line across the gap would read as ~1e3 rad/s^3 at its ends; cut there, it is 6
    stamps = (np.arange(1000) // 5) * 0.01
    keep = (stamps < 0.8) | (stamps >= 1.1)
    t, q = stamps[keep], np.stack([stamps[keep] ** 3], 1)
    rms, mx, gaps = command_jerk(t, q, dt_s=0.02)
    assert gaps == 1 and mx == pytest.approx(6.0, rel=0.2)
    uncut = command_jerk(t, q, dt_s=0.02, max_gap_s=1.0)
    assert uncut[2] == 0 and uncut[1] > 100.0      # what the metric read before the cut


def test_tracker_success_side_contact_and_foreign_episodes():
    tr = EpisodeTracker(index=0, episode=4, seed=7)
    assert not tr.on_status(3, 9.0, 0.5, True, True, 'left', True)     # the previous episode
    assert tr.on_status(4, 0.0, 0.30, False, False, '', False)
    tr.on_status(4, 1.5, 0.10, False, True, 'right', False, 0.004)
    tr.on_status(4, 2.5, 0.01, True, False, 'right', False, 0.007)
    tr.on_status(4, 3.5, 0.02, True, False, 'right', True)
    for k in range(10):
        tr.on_chunk(0.02 + 0.001 * k)
    tr.on_follower_status(5.0, 2.0, 300, 0.01)
    tr.on_follower_status(float('nan'), 4.0, 100, 0.03)
    tr.on_follower_status(1.0, float('nan'), 0, float('nan'))     # a window without commands
    r = tr.result()
    assert r.success and r.done and r.obstacle_contact and r.side == 'right'
    assert r.time_to_success_s == 2.5
    assert r.min_distance_m == pytest.approx(0.01) and r.final_distance_m == pytest.approx(0.02)
    assert r.chunks == 10 and r.follower_jerk_max_rad_s3 == 5.0
    # windows combined by their terms: sqrt((300 * 4 + 100 * 16) / 400)
    assert r.follower_jerk_rms_rad_s3 == pytest.approx(np.sqrt(7.0))
    assert r.follower_boundary_step_max_rad == pytest.approx(0.03)
    other = EpisodeTracker(index=1, episode=5, seed=8)
    other.on_follower_status(1.0, 1.0, 600, 0.0)
    # the run: sqrt((300 * 4 + 100 * 16 + 600 * 1) / 1000)
    assert summarize_episodes([r, other.result()])['follower_jerk_rms_rad_s3'] == \
        pytest.approx(np.sqrt(3.4))
    assert r.min_clearance_m == pytest.approx(0.004)      # the smallest any status reported


def test_summary_counts_sides_of_successes_only():
    recs = []
    for i, (ok, side, contact) in enumerate([(True, 'left', False), (True, 'right', False),
                                             (True, 'left', False), (False, 'left', True)]):
        tr = EpisodeTracker(i, i + 1, i)
        tr.on_status(i + 1, 2.0 + i, 0.0, ok, contact, side, True, 0.01 * i - 0.005)
        tr.on_chunk(0.01 * (i + 1))
        recs.append(tr.result())
    m = summarize_episodes(recs)
    assert m['episodes'] == 4 and m['successes'] == 3 and m['success_rate'] == 0.75
    assert m['side_of_successes'] == {'left': 2, 'right': 1}
    assert m['side_of_all'] == {'left': 3, 'right': 1}
    assert m['obstacle_contacts'] == 1
    assert m['time_to_success_s']['mean'] == pytest.approx(3.0)
    assert m['latency']['n'] == 4
    c = m['min_clearance_m']
    assert c['min'] == pytest.approx(-0.005) and c['median'] == pytest.approx(0.01)


def test_boundary_step_is_the_new_chunk_minus_the_previous_at_its_arrival():
    tr = EpisodeTracker(index=0, episode=1, seed=0)
    t = np.arange(5) * 0.1
    tr.on_chunk(0.01, 0.0, t, np.stack([t, -t], 1), arrival_s=0.02)       # the first: no step
    tr.on_chunk(0.01, 0.1, t, np.stack([t + 0.1, 0.5 - t], 1), arrival_s=0.15)
    # at 0.15 s: previous (0.15, -0.15), new (0.15, 0.45): step 0.6 on the second joint
    tr.on_chunk(0.01, 5.0, t, np.stack([t, t], 1), arrival_s=5.05)         # no overlap: skipped
    tr.on_chunk(0.02)                                                     # latency only
    r = tr.result()
    assert r.chunks == 4
    assert r.boundary_step_max_rad == pytest.approx(0.6) and r.boundary_step_mean_rad == pytest.approx(0.6)
    m = summarize_episodes([r])
    assert m['boundary_step_max_rad'] == pytest.approx(0.6)
