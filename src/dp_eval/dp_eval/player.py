"""Bag player: `ros2 bag play` for machines without the ros2 CLI (ROS-free core + thin rclpy sink).

What it is: publishes the messages of a rosbag2 folder (sqlite3 or mcap) on their topics, as the
raw CDR bytes that were recorded, at real time times `rate` (or as fast as possible with rate 0),
optionally publishing /clock (rosgraph_msgs/Clock) from the bag time so that nodes running with
`use_sim_time` see the recorded time, with topic selection, remapping and looping.

Timeline: the first message is published `delay_s` after start; message m is published at
wall = start + delay + (t_m - t_first) / rate. With `clock`, /clock carries t_first at the start,
advances with the wall clock at `clock_rate_hz` between messages, and equals t_m right before m
is published (so a subscriber never sees a message "from the future").

What it is not: a recorder (see dp_eval.live for recording) or a message decoder: messages are
not deserialized (custom types play as long as the type is importable by rclpy).

Core: `BagPlayer` takes a sink with publish(topic, msgtype, data, stamp_ns) and
publish_clock(stamp_ns); `RosSink` is that sink over rclpy. `main()` is `dp_bag_play`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

from dp_eval import bagio

__all__ = ['PlayOptions', 'PlayStats', 'BagPlayer', 'RosSink', 'parse_remaps', 'main']


@dataclass
class PlayOptions:
    rate: float = 1.0              # playback speed factor; 0 = as fast as possible
    clock: bool = False            # publish /clock from the bag time
    clock_rate_hz: float = 100.0   # /clock publish rate between messages (with clock)
    topics: Optional[list[str]] = None   # bag topics to play (None: all)
    remap: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic
    loop: bool = False             # start over at the end (until stopped)
    delay_s: float = 0.5           # pause after creating publishers (DDS discovery) before playing
    start_offset_s: float = 0.0    # skip the first seconds of the bag
    duration_s: Optional[float] = None   # stop after this much bag time
    wait_for_subscribers_s: float = 0.0  # before playing, wait up to this long until every
                                         # played topic has a matched subscriber (0: no wait)

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f'rate must be >= 0 (0: as fast as possible), got {self.rate}')
        if self.clock_rate_hz <= 0:
            raise ValueError(f'clock_rate_hz must be > 0, got {self.clock_rate_hz}')
        if self.delay_s < 0 or self.start_offset_s < 0:
            raise ValueError('delay_s and start_offset_s must be >= 0')


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)   # by published topic
    clock_messages: int = 0
    bag_start_ns: Optional[int] = None
    bag_end_ns: Optional[int] = None
    wall_s: float = 0.0
    loops: int = 0
    error: Optional[str] = None      # a corrupt bag: what was read before is published

    @property
    def total(self) -> int:
        return sum(self.published.values())


class Sink(Protocol):
    def publish(self, topic: str, msgtype: str, data: bytes, stamp_ns: int) -> None: ...
    def publish_clock(self, stamp_ns: int) -> None: ...


def parse_remaps(items: list[str]) -> dict[str, str]:
    """['/a:=/b', ...] -> {'/a': '/b'} (the ros2 CLI's syntax)."""
    out = {}
    for item in items or []:
        if ':=' not in item:
            raise ValueError(f'remap must be from:=to, got {item!r}')
        src, dst = item.split(':=', 1)
        if not src or not dst:
            raise ValueError(f'remap must be from:=to, got {item!r}')
        out[src] = dst
    return out


class BagPlayer:
    """Plays one bag into a sink on a wall-clock schedule (see module docstring)."""

    def __init__(self, bag: str | Path, options: PlayOptions, sink: Sink,
                 now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 progress: bool = True, should_stop: Callable[[], bool] = lambda: False):
        self.bag = str(bag)
        self.options = options
        self.sink = sink
        self.now, self.sleep = now, sleep
        self.progress = progress
        self.should_stop = should_stop
        self._bar = None
        self._last_clock_ns = -1
        present = bagio.bag_topics(self.bag)
        if options.topics:
            for t in options.topics:
                if t not in present:
                    raise bagio.MissingTopicError(self.bag, t, present)
            self.topics = list(options.topics)
        else:
            self.topics = sorted(present)
        self.types = {t: present[t] for t in self.topics}
        info = bagio.bag_info(self.bag)
        self.message_count = sum(info['topics'][t]['count'] for t in self.topics)

    def _out(self, topic: str) -> str:
        return self.options.remap.get(topic, topic)

    def _clock(self, stamp_ns: int, stats: PlayStats) -> None:
        """Publish /clock, never backwards (float rounding of the interpolation)."""
        stamp_ns = max(int(stamp_ns), self._last_clock_ns)
        self._last_clock_ns = stamp_ns
        self.sink.publish_clock(stamp_ns)
        stats.clock_messages += 1

    def _wait_until(self, wall_target: float, wall0: float, bag0: int, stats: PlayStats,
                    cap_ns: Optional[int] = None) -> None:
        """Sleep until wall_target, publishing /clock at clock_rate_hz meanwhile (never past
        cap_ns, the next message's time)."""
        o = self.options
        period = 1.0 / o.clock_rate_hz
        while not self.should_stop():
            now = self.now()
            remaining = wall_target - now
            if remaining <= 0:
                return
            if o.clock:
                bag_now = bag0 + int(max(0.0, now - wall0) * o.rate * 1e9)
                self._clock(bag_now if cap_ns is None else min(bag_now, cap_ns), stats)
                self.sleep(min(remaining, period))
            else:
                self.sleep(min(remaining, 0.05))

    def run(self) -> PlayStats:
        o = self.options
        stats = PlayStats(published={self._out(t): 0 for t in self.topics})
        t_start = self.now()
        bar = self._bar = None
        if self.progress:
            from dp_eval.progress import bar as make_bar
            bar = make_bar(self.message_count, f'play {Path(self.bag).name}', 'msg')
            self._bar = bar
        try:
            while True:
                self._play_once(stats, t_start)
                stats.loops += 1
                if not o.loop or self.should_stop() or stats.error:
                    break
                if bar is not None:
                    bar.reset()
        finally:
            if bar is not None:
                bar.close()
        stats.wall_s = self.now() - t_start
        return stats

    def _play_once(self, stats: PlayStats, t_start: float) -> None:
        o = self.options
        wall0 = None
        bag0 = None
        first_loop = stats.loops == 0
        self._last_clock_ns = -1      # a new loop starts the bag time over (as ros2 bag play)
        try:
            for msg in bagio.iter_raw(self.bag, self.topics):
                if self.should_stop():
                    return
                if bag0 is None:
                    bag0 = msg.stamp_ns + int(o.start_offset_s * 1e9)
                    if stats.bag_start_ns is None:
                        stats.bag_start_ns = bag0
                    wall0 = self.now() + (o.delay_s if first_loop else 0.0)
                    if o.clock:
                        self._clock(bag0, stats)
                if msg.stamp_ns < bag0:
                    continue
                if o.duration_s is not None and msg.stamp_ns - bag0 > o.duration_s * 1e9:
                    break
                if o.rate > 0:
                    target = wall0 + (msg.stamp_ns - bag0) * 1e-9 / o.rate
                    self._wait_until(target, wall0, bag0, stats, msg.stamp_ns)
                    if self.should_stop():
                        return
                elif first_loop and stats.total == 0:
                    self._wait_until(wall0, wall0, bag0, stats, msg.stamp_ns)
                if o.clock:
                    self._clock(msg.stamp_ns, stats)
                out = self._out(msg.topic)
                self.sink.publish(out, msg.msgtype, msg.data, msg.stamp_ns)
                stats.published[out] += 1
                stats.bag_end_ns = msg.stamp_ns
                if self._bar is not None:
                    self._bar.update(1)
        except bagio.CorruptBagError as exc:
            stats.error = str(exc)


def _message_class(msgtype: str):
    """'sensor_msgs/msg/JointState' -> the rclpy message class."""
    pkg, kind, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ImportError, AttributeError) as exc:
        raise bagio.BagError(f'message type {msgtype} is not importable here ({exc}); build and '
                             f'source the package that defines it') from exc


def _qos_for(profiles: list):
    """A publisher QoS that matches what the recorder saw offered (durability, reliability)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    if profiles:
        p = profiles[0]
        if 'TRANSIENT_LOCAL' in str(getattr(p, 'durability', '')).upper():
            qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
        if 'BEST_EFFORT' in str(getattr(p, 'reliability', '')).upper():
            qos.reliability = ReliabilityPolicy.BEST_EFFORT
    return qos


class RosSink:
    """Publishes raw CDR bytes with rclpy publishers created from the bag's type names."""

    def __init__(self, node, bag: str | Path, topics: list[str], remap: dict[str, str]):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        self.node = node
        self._clock_cls = Clock
        qos = bagio.connection_qos(bag)
        types = bagio.bag_topics(bag)
        self.publishers = {}
        for t in topics:
            out = remap.get(t, t)
            self.publishers[out] = node.create_publisher(_message_class(types[t]), out,
                                                         _qos_for(qos.get(t, [])))
        self.clock_pub = node.create_publisher(
            Clock, '/clock', QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def publish(self, topic: str, msgtype: str, data: bytes, stamp_ns: int) -> None:
        self.publishers[topic].publish(data)

    def wait_for_subscribers(self, timeout_s: float) -> list[str]:
        """Wait until every publisher has a matched subscription; returns those still without."""
        end = time.monotonic() + timeout_s
        while True:
            missing = [t for t, p in self.publishers.items() if p.get_subscription_count() == 0]
            if not missing or time.monotonic() >= end:
                return missing
            time.sleep(0.05)

    def publish_clock(self, stamp_ns: int) -> None:
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self.clock_pub.publish(msg)


def play(bag: str | Path, options: PlayOptions, progress: bool = True, context=None,
         node_name: str = 'dp_bag_play', should_stop: Callable[[], bool] = lambda: False
         ) -> PlayStats:
    """Play a bag over DDS (own rclpy context unless one is given) and return the stats."""
    import rclpy
    own = context is None
    if own:
        context = rclpy.context.Context()
        rclpy.init(context=context)
    try:
        node = rclpy.create_node(node_name, context=context)
        try:
            player = BagPlayer(bag, options, sink=None, progress=progress,  # type: ignore[arg-type]
                               should_stop=lambda: should_stop() or not context.ok())
            player.sink = RosSink(node, bag, player.topics, options.remap)
            if options.wait_for_subscribers_s > 0:
                missing = player.sink.wait_for_subscribers(options.wait_for_subscribers_s)
                if missing:
                    print(f'dp_bag_play: no subscriber on {missing} after '
                          f'{options.wait_for_subscribers_s} s; playing anyway', file=sys.stderr)
            return player.run()
        finally:
            node.destroy_node()
    finally:
        if own:
            rclpy.try_shutdown(context=context)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='dp_bag_play',
        description='Publish a rosbag2 bag (sqlite3 or mcap) on its topics at real time x rate, '
                    'optionally with /clock: `ros2 bag play` where the ros2 CLI is not available.')
    p.add_argument('bag', help='bag folder (with metadata.yaml)')
    p.add_argument('--rate', '-r', type=float, default=1.0,
                   help='speed factor (default 1.0; 0 = as fast as possible)')
    p.add_argument('--clock', action='store_true', help='publish /clock from the bag time')
    p.add_argument('--clock-rate-hz', type=float, default=100.0,
                   help='/clock rate between messages (default 100)')
    p.add_argument('--topics', nargs='+', default=None, help='play only these bag topics')
    p.add_argument('--remap', nargs='+', default=[], metavar='FROM:=TO',
                   help='publish bag topic FROM on TO')
    p.add_argument('--loop', '-l', action='store_true', help='start over at the end')
    p.add_argument('--delay', type=float, default=0.5,
                   help='seconds to wait after creating publishers before playing (default 0.5)')
    p.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='S',
                   help='wait up to S seconds for a subscriber on every played topic')
    p.add_argument('--start-offset', type=float, default=0.0, help='skip the first seconds')
    p.add_argument('--duration', type=float, default=None, help='play this many bag seconds')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def main(argv: Optional[list[str]] = None) -> int:
    ns, ros_args = build_parser().parse_known_args(argv)
    try:
        options = PlayOptions(rate=ns.rate, clock=ns.clock, clock_rate_hz=ns.clock_rate_hz,
                              topics=ns.topics, remap=parse_remaps(ns.remap), loop=ns.loop,
                              delay_s=ns.delay, start_offset_s=ns.start_offset,
                              duration_s=ns.duration,
                              wait_for_subscribers_s=ns.wait_for_subscribers)
    except ValueError as exc:
        print(f'dp_bag_play: {exc}', file=sys.stderr)
        return 2
    try:
        stats = play(ns.bag, options, progress=not ns.no_progress)
    except KeyboardInterrupt:
        return 0
    except bagio.BagError as exc:
        print(f'dp_bag_play: {exc}', file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - ExternalShutdownException on SIGINT/SIGTERM
        if type(exc).__name__ == 'ExternalShutdownException':
            return 0
        raise
    print(f'dp_bag_play: published {stats.total} messages '
          f'({", ".join(f"{t}: {n}" for t, n in stats.published.items())}), '
          f'{stats.clock_messages} /clock, in {stats.wall_s:.2f} s', file=sys.stderr)
    if stats.error:
        print(f'dp_bag_play: {stats.error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
