"""What dp_eval's runs against a live graph share (closed loop, live replay): the raw recorder of
the topics they watch, and the tail of a node's log for an error message."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional


def log_tail(log_dir: Optional[Path], name: str, lines: int = 15) -> str:
    """The last lines of a node's log file (ProcessGroup log_dir), for an error message."""
    if log_dir is None:
        return ''
    f = log_dir / f'{name}.log'
    if not f.is_file():
        return ''
    tail = f.read_text(errors='replace').splitlines()[-lines:]
    return f'\n  last lines of {f}:\n    ' + '\n    '.join(tail)


class RawRecorder:
    """Raw-CDR recording of topics into a rosbag2 (BagWriter), thread safe."""

    def __init__(self, path: str, storage: str):
        from dp_common.bags import BagWriter
        self.path = path
        self.writer = BagWriter(path, storage=storage)
        self.writer.__enter__()
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.closed = False

    def write(self, topic: str, msgtype: str, data: bytes, log_ns: int) -> None:
        with self.lock:
            if self.closed:
                return
            self.writer.write_raw(topic, msgtype, bytes(data), log_ns)
            self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.writer.__exit__(None, None, None)


def subscribe_raw(node, topics: dict, write, status_latched: bool = True
                  ) -> tuple[list[str], list[str]]:
    """Raw (serialized) subscriptions of `node` for recording: topics {name: type or None (the
    type the graph has now)}; each message goes to write(topic, type, data). QoS follows the
    topic's publishers (transient local if all of them are: latched statuses; best effort if any
    is); with no publisher seen yet: volatile and reliable, or latched for topics ending in
    /status where status_latched (live replay subscribes before the graph runs). Returns
    (topics subscribed, topics skipped: type unknown)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from dp_eval.player import _message_class
    graph = dict(node.get_topic_names_and_types())
    recorded, skipped = [], []
    for topic, msgtype in topics.items():
        msgtype = msgtype or (graph.get(topic) or [None])[0]
        if msgtype is None:
            skipped.append(topic)
            continue
        pubs = node.get_publishers_info_by_topic(topic)
        if pubs:
            durable = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                          for p in pubs)
            best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                              for p in pubs)
        else:
            durable, best_effort = status_latched and topic.endswith('/status'), False
        qos = QoSProfile(depth=1 if durable else 100,
                         reliability=(ReliabilityPolicy.BEST_EFFORT if best_effort
                                      else ReliabilityPolicy.RELIABLE),
                         durability=(DurabilityPolicy.TRANSIENT_LOCAL if durable
                                     else DurabilityPolicy.VOLATILE))
        node.create_subscription(_message_class(msgtype), topic,
                                 lambda data, t=topic, ty=msgtype: write(t, ty, data), qos,
                                 raw=True)
        recorded.append(topic)
    return recorded, skipped
