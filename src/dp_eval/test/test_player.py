"""player.py core: schedule, /clock, topic selection, remapping, corrupt bags (a recording sink
and a simulated wall clock; the rclpy sink is exercised in test_graph_eval.py)."""
import pytest

from dp_eval import bagio, player, synthetic


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def now(self):
        return self.t

    def sleep(self, dt):
        self.t += max(dt, 0.0)


class Sink:
    def __init__(self, clock):
        self.clock = clock
        self.msgs = []      # (wall, topic, stamp_ns)
        self.clocks = []    # (wall, stamp_ns)

    def publish(self, topic, msgtype, data, stamp_ns):
        self.msgs.append((self.clock.now(), topic, stamp_ns))

    def publish_clock(self, stamp_ns):
        self.clocks.append((self.clock.now(), stamp_ns))


def _play(bag, **kw):
    ft = FakeTime()
    sink = Sink(ft)
    opts = player.PlayOptions(**kw)
    stats = player.BagPlayer(bag, opts, sink, now=ft.now, sleep=ft.sleep, progress=False).run()
    return stats, sink, ft


@pytest.mark.parametrize('rate', [1.0, 2.0])
def test_messages_keep_their_spacing_and_clock_never_runs_ahead(bags, rate):
    stats, sink, _ = _play(bags['sqlite3'][0], rate=rate, clock=True, delay_s=0.5)
    assert stats.total == bagio.bag_info(bags['sqlite3'][0])['message_count']
    t0_wall, _, t0_bag = sink.msgs[0]
    assert t0_wall == pytest.approx(100.5)
    for wall, _, stamp in sink.msgs:
        assert wall - t0_wall == pytest.approx((stamp - t0_bag) * 1e-9 / rate, abs=1e-6)
    clocks = [c for _, c in sink.clocks]
    assert clocks == sorted(clocks) and clocks[0] == t0_bag
    # before each message the clock has reached (not passed) the message's time
    last_clock = {}
    ci = 0
    for wall, topic, stamp in sink.msgs:
        while ci < len(sink.clocks) and sink.clocks[ci][0] <= wall:
            last_clock = sink.clocks[ci][1]
            ci += 1
        assert last_clock <= stamp
    # between messages /clock ticks at ~clock_rate_hz (default 100 Hz) of wall time
    span = sink.msgs[-1][0] - t0_wall
    assert stats.clock_messages >= 0.9 * span * 100


def test_topic_selection_remap_and_missing_topic(bags):
    stats, sink, _ = _play(bags['mcap'][0], rate=0.0, topics=['/joint_states'],
                           remap={'/joint_states': '/robot/joint_states'}, delay_s=0.0)
    assert {t for _, t, _ in sink.msgs} == {'/robot/joint_states'}
    assert stats.published == {'/robot/joint_states': 151}
    with pytest.raises(bagio.MissingTopicError, match="'/nope'"):
        _play(bags['mcap'][0], topics=['/nope'])
    assert player.parse_remaps(['/a:=/b']) == {'/a': '/b'}
    with pytest.raises(ValueError):
        player.parse_remaps(['/a'])
    with pytest.raises(ValueError):
        player.PlayOptions(rate=-1)


def test_corrupt_bag_stops_with_error(bags, tmp_path):
    bad = synthetic.corrupt_bag(bags['mcap'][0], tmp_path / 'bad', 0.5, 'truncate')
    stats, sink, _ = _play(bad, rate=0.0, delay_s=0.0)
    assert stats.error and 'truncated or corrupt' in stats.error
