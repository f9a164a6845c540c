"""EpisodeRecorder / StampClock / EpisodeBag (ROS-free): episode split, publication log times.

Messages are fed the way recorder_node feeds them (CDR bytes + the publisher's source timestamp)
and deliberately out of order between topics, as a busy single-threaded executor delivers them;
the bags are read back with rosbags.
"""
import subprocess
import sys

import pytest
from rosbags.rosbag2 import Reader

from dp_common.bags import msgs, typestore
from dp_sim.recorder import EpisodeBag, EpisodeRecorder, StampClock, StatusInfo, cdr_header_stamp_ns

STORE = typestore()
TOPICS = {'/joint_states': 'sensor_msgs/msg/JointState',
          '/forward_position_controller/commands': 'std_msgs/msg/Float64MultiArray',
          '/task_status': 'dp_msgs/msg/TaskStatus'}
MS = 1_000_000


def _cdr(msg):
    return bytes(STORE.serialize_cdr(msg, msg.__msgtype__))


def _status(t_ns, episode, done=False, success=False):
    m = msgs.task_status(t_ns, episode, done)
    m.success = success
    m.side = 'left' if success else ''
    return m


def _info(m, t_ns, t_ep_s):
    return StatusInfo(stamp_ns=t_ns, episode=m.episode, episode_time_s=t_ep_s, success=m.success,
                      obstacle_contact=False, side=m.side, done=m.done)


class Harness:
    def __init__(self, tmp_path, storage='sqlite3'):
        self.closed = []
        self.rec = EpisodeRecorder(TOPICS, '/task_status', self._open, self.closed.append, max_lag_s=1.0)
        self.tmp = tmp_path
        self.storage = storage

    def _open(self, ep):
        return EpisodeBag(self.tmp / f'episode_{ep:04d}', TOPICS, self.storage)


def _read(path):
    out = {}
    with Reader(path) as r:
        for c, log, raw in r.messages():
            out.setdefault(c.topic, []).append((log, STORE.deserialize_cdr(raw, c.msgtype)))
    return out


def test_stamp_clock_interpolates_and_clamps():
    c = StampClock()
    assert c.lookup(5) is None
    c.add(1000, 10)
    c.add(2000, 30)
    c.add(1500, 25)  # out of order: inserted
    c.add(1500, 99)  # same source time again: ignored
    assert c.lookup(500) == 10 and c.lookup(1250) == 17 and c.lookup(1750) == 27
    assert c.lookup(2500) == 30
    assert c.newest_wall_ns == 2000


def test_cdr_header_stamp():
    raw = _cdr(msgs.joint_state(12_345_678_901, ['a'], [0.0]))
    assert cdr_header_stamp_ns(raw) == 12_345_678_901
    assert cdr_header_stamp_ns(b'\x00\x01') is None


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_episodes_split_by_publication_time_with_lagging_topics(tmp_path, storage):
    """Simulated time runs 10x faster than wall time (1 ms wall = 10 ms sim). Joint states
    arrive 150 ms (wall) late - after their whole episode and the next one's start -, commands
    12 ms late: each lands in its episode's bag anyway, with its publication time (simulated)
    as log time."""
    h = Harness(tmp_path, storage)
    rec = h.rec
    sim = lambda w: 10 * w  # noqa: E731 - wall ns -> sim ns of this synthetic graph
    events = []  # (arrival wall, kind, payload)
    for ep, (w0, w1) in enumerate([(100 * MS, 160 * MS), (200 * MS, 250 * MS)], start=1):
        events.append((w0, 'status', (w0, _status(sim(w0), ep), 0.0)))
        for w in range(w0 + MS, w1, MS):
            events.append((w + 150 * MS, 'js', (w, msgs.joint_state(sim(w), ['j'], [w * 1e-9]))))
            if (w // MS) % 2 == 0:
                events.append((w + 12 * MS, 'cmd', (w, msgs.float64_multi_array([w * 1e-9]))))
            if (w // MS) % 5 == 0:
                events.append((w, 'status', (w, _status(sim(w), ep), (w - w0) * 1e-8)))
        events.append((w1, 'status', (w1, _status(sim(w1), ep, done=True, success=(ep == 1)),
                                      (w1 - w0) * 1e-8)))
    # Between the episodes: messages that belong to no episode.
    events.append((180 * MS, 'cmd', (175 * MS, msgs.float64_multi_array([9.0]))))
    for arrival, kind, payload in sorted(events, key=lambda e: e[0]):
        w = payload[0]
        if kind == 'status':
            _, m, t_ep = payload
            rec.on_status(w, _info(m, sim(w), t_ep), _cdr(m))
        elif kind == 'js':
            rec.on_message('/joint_states', w, _cdr(payload[1]), sim(w))
        else:
            rec.on_message('/forward_position_controller/commands', w, _cdr(payload[1]))
    rec.finish()

    assert [c['episode'] for c in h.closed] == [1, 2]
    assert [c['complete'] for c in h.closed] == [True, True]
    assert [c['success'] for c in h.closed] == [True, False]
    assert h.closed[-1]['late_total'] == {} and rec.between >= 1
    bag1 = _read(tmp_path / 'episode_0001')
    assert len(bag1['/joint_states']) == 59          # every one published in (100, 160) ms
    assert len(bag1['/forward_position_controller/commands']) == 29  # even ms in (100, 160)
    for log, m in bag1['/forward_position_controller/commands']:
        # log time = publication time in simulated time, although it arrived 12 ms (wall) late
        assert log == pytest.approx(sim(m.data[0] * 1e9), abs=1e3)
    for log, m in bag1['/joint_states']:
        assert log == m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
    logs = [log for topic in bag1 for log, _ in bag1[topic]]
    assert min(logs) == sim(100 * MS) and max(logs) == sim(160 * MS)
    assert bag1['/task_status'][-1][1].done
    bag2 = _read(tmp_path / 'episode_0002')
    assert len(bag2['/joint_states']) == 49
    assert all(9.0 not in m.data for _, m in bag2['/forward_position_controller/commands'])


def test_reset_before_done_closes_the_episode_incomplete(tmp_path):
    h = Harness(tmp_path)
    rec = h.rec
    m1 = _status(1000 * MS, 1)
    rec.on_status(100 * MS, _info(m1, 1000 * MS, 0.0), _cdr(m1))
    rec.on_message('/joint_states', 110 * MS, _cdr(msgs.joint_state(1100 * MS, ['j'], [0.0])),
                   1100 * MS)
    m2 = _status(1200 * MS, 2)
    rec.on_status(120 * MS, _info(m2, 1200 * MS, 0.0), _cdr(m2))
    rec.on_message('/joint_states', 130 * MS, _cdr(msgs.joint_state(1300 * MS, ['j'], [0.0])),
                   1300 * MS)
    rec.finish()
    assert [(c['episode'], c['complete'], c['success']) for c in h.closed] == \
        [(1, False, False), (2, False, False)]
    assert h.closed[0]['messages']['/joint_states'] == 1


def test_episode_joined_late_is_not_recorded(tmp_path):
    h = Harness(tmp_path)
    m = _status(5000 * MS, 3)
    h.rec.on_status(100 * MS, _info(m, 5000 * MS, 3.0), _cdr(m))
    h.rec.finish()
    assert h.closed == [] and not (tmp_path / 'episode_0003').exists()


def test_recorder_core_imports_without_rclpy():
    code = 'import sys, dp_sim.recorder; assert "rclpy" not in sys.modules'
    subprocess.run([sys.executable, '-c', code], check=True)
