"""Episode bag writing for the recorder (ROS-free: rosbags only).

`EpisodeBag` writes serialized CDR messages, as received from DDS, into one rosbag2 folder
(sqlite3 or mcap storage) with the types' full definitions and RIHS01 hashes (so `ros2 bag info`
and `ros2 bag play` read it). dp_msgs types come from dp_common.bags, the same type
store the dataset reader uses.

`EpisodeRecorder` decides what goes into which bag and with which log time, from events the node
feeds it: every message with the **publisher's source timestamp** (wall clock ns, delivered by
DDS with it). Publishers and recorder share one machine, so source timestamps order all messages
of all topics exactly as they were published, whatever the recorder's own delays.

- Log time = the time at which the message was *published*, in the graph's time (simulated when
  the simulation runs faster than real time): `StampClock` interpolates it from reference
  messages whose header stamp is their publication time (the simulation's joint states and task
  status), at the message's source timestamp. A busy recorder therefore never shifts a command
  against the images; this matters because std_msgs/Float64MultiArray commands have no header
  and the dataset reader aligns them by log time.
- Episode membership by publication time: a bag holds the messages published from the task
  status that opened the episode up to the status that said done.
- Messages wait in a queue until every recorded topic has been received past their source
  timestamp (each topic arrives in publication order, but a busy single-threaded executor
  delays high-rate topics more than others), then they are written in publication order; a
  finished episode's bag closes once every topic is past its end. A topic silent for longer than
  `max_lag_s` stops holding the others back; `late` counts messages that came after their
  episode's bag was closed (dropped).

Not here: subscriptions (recorder_node) or file layout beyond one folder per episode.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import shutil
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from rosbags.rosbag2 import StoragePlugin, Writer

from dp_common.bags import typestore as dp_typestore

__all__ = ['EpisodeBag', 'EpisodeRecorder', 'StatusInfo', 'StampClock', 'cdr_header_stamp_ns',
           'HEADER_TYPES']

# Message types (of the recorded ones) that start with a std_msgs/Header.
HEADER_TYPES = frozenset({'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage',
                          'sensor_msgs/msg/CameraInfo', 'sensor_msgs/msg/JointState',
                          'dp_msgs/msg/TaskStatus', 'trajectory_msgs/msg/JointTrajectory'})


def cdr_header_stamp_ns(raw: bytes) -> Optional[int]:
    """header.stamp (ns) of a CDR-serialized message whose first field is a Header, else None."""
    if len(raw) < 12:
        return None
    little = raw[1] in (1, 3)  # encapsulation kind: CDR_LE / PL_CDR_LE
    sec, nanosec = struct.unpack_from('<iI' if little else '>iI', raw, 4)
    return sec * 1_000_000_000 + nanosec


class EpisodeBag:
    """One rosbag2 folder being written. Use close() (or a with-block) to finalize it."""

    def __init__(self, path: Path, topics: dict[str, str], storage: str = 'sqlite3',
                 distro: str = 'kilted') -> None:
        if storage not in ('sqlite3', 'mcap'):
            raise ValueError(f"storage must be 'sqlite3' or 'mcap', got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        store = dp_typestore(distro)
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._conns = {topic: self._writer.add_connection(topic, msgtype, typestore=store)
                       for topic, msgtype in topics.items()}
        self.counts = {topic: 0 for topic in topics}
        self.closed = False

    def write(self, topic: str, timestamp_ns: int, raw: bytes) -> None:
        self._writer.write(self._conns[topic], int(timestamp_ns), bytes(raw))
        self.counts[topic] += 1

    def close(self) -> None:
        if not self.closed:
            self._writer.close()
            self.closed = True

    def __enter__(self) -> 'EpisodeBag':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StampClock:
    """Publisher wall-clock time -> graph time, from (source timestamp, header stamp) samples.

    `lookup(w)` interpolates linearly between the samples around w (clamped at the ends), where
    a sample is a message stamped with the graph time at which it was published. Samples may
    come in any order (topics are delivered with different delays); the newest `maxlen` count.
    """

    def __init__(self, maxlen: int = 20000) -> None:
        self._maxlen = maxlen
        self._wall: list[int] = []
        self._t: list[int] = []

    def add(self, wall_ns: int, stamp_ns: int) -> None:
        i = bisect.bisect_left(self._wall, wall_ns)
        if i < len(self._wall) and self._wall[i] == wall_ns:
            return
        self._wall.insert(i, int(wall_ns))
        self._t.insert(i, int(stamp_ns))
        if len(self._wall) > 2 * self._maxlen:
            del self._wall[:self._maxlen], self._t[:self._maxlen]

    @property
    def newest_wall_ns(self) -> Optional[int]:
        return self._wall[-1] if self._wall else None

    def lookup(self, wall_ns: int) -> Optional[int]:
        if not self._wall:
            return None
        i = bisect.bisect_right(self._wall, wall_ns)
        if i == 0:
            return self._t[0]
        if i == len(self._wall):
            return self._t[-1]
        w0, w1, t0, t1 = self._wall[i - 1], self._wall[i], self._t[i - 1], self._t[i]
        return t0 + (t1 - t0) * (wall_ns - w0) // (w1 - w0)


@dataclass
class StatusInfo:
    """The fields of dp_msgs/TaskStatus the recorder needs."""

    stamp_ns: int
    episode: int
    episode_time_s: float
    success: bool
    obstacle_contact: bool
    side: str
    done: bool


@dataclass
class _Open:
    episode: int
    bag: EpisodeBag
    w_start: int
    w_end: Optional[int] = None
    complete: bool = False
    last_status: Optional[StatusInfo] = None


class EpisodeRecorder:
    """Splits a stream of source-timestamped messages into one bag per episode.

    topics: the recorded topics published steadily (sensors): an episode is written out once
    each of them has been received past its end. Topics not listed (commands, which stop
    between episodes) are recorded all the same, but do not hold anything back.
    open_bag(episode) must return an EpisodeBag; on_closed(info) is called with a summary dict
    for every closed bag. Feed every message with on_message (also the reference ones: pass
    their header stamp), the task status with on_status, and call finish() at the end.
    """

    def __init__(self, topics: Iterable[str], status_topic: str,
                 open_bag: Callable[[int], EpisodeBag],
                 on_closed: Callable[[dict], None], max_start_delay_s: float = 0.5,
                 max_lag_s: float = 60.0, max_pending: int = 200000) -> None:
        self.status_topic = status_topic
        self._open_bag = open_bag
        self._on_closed = on_closed
        self.max_start_delay_s = max_start_delay_s
        self.max_lag_ns = int(max_lag_s * 1e9)
        # Per recorded topic: newest source timestamp received (0: not yet; a topic never
        # received holds the others back by max_lag_s only).
        self._newest: dict[str, int] = {t: 0 for t in topics}
        self._newest[status_topic] = 0
        self.clock = StampClock()
        self._pending: list[tuple[int, int, str, bytes]] = []  # heap by source timestamp
        self._seq = itertools.count()
        self._max_pending = max_pending
        self._status_w: Optional[int] = None
        self._open: list[_Open] = []
        self._closed_ranges: deque[tuple[int, int]] = deque(maxlen=8)
        self.episode = 0
        self.dropped_overflow = 0
        self.between = 0  # messages published between episodes (not recorded)
        self.skipped_late: list[int] = []  # episodes first seen after max_start_delay_s
        self.late: dict[str, int] = {}  # messages that came after their episode's bag closed

    # ------------------------------------------------------------------ events
    def on_message(self, topic: str, wall_ns: int, raw: bytes,
                   reference_stamp_ns: Optional[int] = None) -> None:
        """A message published at wall_ns; reference_stamp_ns: its header stamp if the topic is
        a time reference (stamped with the graph time of its publication)."""
        if reference_stamp_ns is not None:
            self.clock.add(wall_ns, reference_stamp_ns)
        self._seen(topic, wall_ns)
        heapq.heappush(self._pending, (int(wall_ns), next(self._seq), topic, bytes(raw)))
        if len(self._pending) > self._max_pending:  # references stopped: do not grow forever
            heapq.heappop(self._pending)
            self.dropped_overflow += 1
        self._flush()

    def on_status(self, wall_ns: int, st: StatusInfo, raw: bytes) -> None:
        wall_ns = int(wall_ns)
        if self._status_w is not None and wall_ns <= self._status_w:
            return  # duplicate (latched re-delivery) or out of order
        self._status_w = wall_ns
        self.clock.add(wall_ns, st.stamp_ns)
        self._seen(self.status_topic, wall_ns)
        if st.episode != 0 and st.episode > self.episode:
            for ep in self._open:  # reset before done: the old episode ends here, incomplete
                if ep.w_end is None:
                    ep.w_end = wall_ns - 1
            self.episode = st.episode
            if not (st.done or st.episode_time_s > self.max_start_delay_s):
                self._open.append(_Open(st.episode, self._open_bag(st.episode), wall_ns))
            else:  # joined late: its start was missed
                self.skipped_late.append(st.episode)
        for ep in self._open:
            if ep.episode == st.episode and ep.w_end is None:
                ep.last_status = st
                if st.done:
                    ep.w_end, ep.complete = wall_ns, True
        heapq.heappush(self._pending, (wall_ns, next(self._seq), self.status_topic, bytes(raw)))
        self._flush()

    def finish(self) -> None:
        """Write what is pending (best known log times) and close every open bag."""
        self._flush(final=True)

    # ------------------------------------------------------------------ internals
    def _seen(self, topic: str, wall_ns: int) -> None:
        if wall_ns > self._newest.get(topic, -1):
            self._newest[topic] = int(wall_ns)

    def _horizon(self) -> Optional[int]:
        """Everything published up to here has been received: every topic has been seen past it
        (the topics are delivered in publication order each). A topic that falls silent (the
        commands between episodes) holds the horizon back by at most max_lag_s."""
        if self._status_w is None or self.clock.newest_wall_ns is None:
            return None
        lo, hi = min(self._newest.values()), max(self._newest.values())
        return max(lo, hi - self.max_lag_ns)

    def _flush(self, final: bool = False) -> None:
        horizon = None if final else self._horizon()
        if horizon is None and not final:
            return
        while self._pending and (final or self._pending[0][0] <= horizon):
            w, _, topic, raw = heapq.heappop(self._pending)
            for ep in self._open:
                if ep.w_start <= w and (ep.w_end is None or w <= ep.w_end):
                    ep.bag.write(topic, self.clock.lookup(w), raw)
                    break
            else:
                if any(a <= w <= b for a, b in self._closed_ranges):
                    self.late[topic] = self.late.get(topic, 0) + 1
                else:
                    self.between += 1
        for ep in list(self._open):
            if ep.w_end is not None and (final or horizon >= ep.w_end):
                self._close(ep)
        if final:
            for ep in list(self._open):
                self._close(ep)

    def _close(self, ep: _Open) -> None:
        self._open.remove(ep)
        ep.bag.close()
        self._closed_ranges.append((ep.w_start, ep.w_end if ep.w_end is not None else 2**63))
        st = ep.last_status
        info = {'episode': ep.episode, 'bag': str(ep.bag.path),
                'success': bool(ep.complete and st is not None and st.success),
                'complete': ep.complete, 'side': st.side if st else '',
                'contact': bool(st.obstacle_contact) if st else False,
                'duration_s': round(st.episode_time_s, 3) if st else None,
                'messages': dict(ep.bag.counts), 'late_total': dict(self.late)}
        self._on_closed(info)
