"""rosbag2 access for evaluation: open, check topics, iterate raw CDR messages (ROS-free).

What it is: the thin layer over `rosbags` that dp_eval's player and comparisons use. It reads
rosbag2 folders (metadata.yaml + sqlite3 or mcap files) as written by `ros2 bag record` or by
rosbags' Writer, gives clear errors for a missing topic (naming it and listing the topics that are
present) and for a truncated or corrupt file (naming the file and how far reading got), and knows
the project's own message types (dp_msgs, through dp_policy_node.bag_types).

What it is not: a decoder of observations onto the policy's grid. Offline replay and the ground
truth of live replay use `dp_policy_node.dataset.load_episodes` (one bag decoder in the project).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Optional, Sequence

__all__ = ['BagError', 'MissingTopicError', 'CorruptBagError', 'RawMessage', 'typestore',
           'bag_topics', 'require_topics', 'iter_raw', 'bag_info']


class BagError(RuntimeError):
    """A bag cannot be used for evaluation (missing, unreadable, lacking a topic)."""


class MissingTopicError(BagError):
    """A topic the evaluation needs is not in the bag."""

    def __init__(self, bag: str, topic: str, present: dict[str, str]):
        self.bag, self.topic, self.present = bag, topic, dict(present)
        listing = ', '.join(f'{t} ({ty})' for t, ty in sorted(present.items())) or 'none'
        super().__init__(f'bag {bag}: topic {topic!r} is missing; topics present: {listing}')


class CorruptBagError(BagError):
    """A bag file ends early or cannot be decoded; `messages_read` were read before the fault."""

    def __init__(self, bag: str, reason: str, messages_read: int = 0,
                 last_stamp_ns: Optional[int] = None):
        self.bag, self.reason = bag, reason
        self.messages_read, self.last_stamp_ns = messages_read, last_stamp_ns
        where = (f' after {messages_read} messages (last at {last_stamp_ns * 1e-9:.3f} s)'
                 if last_stamp_ns is not None else f' after {messages_read} messages')
        super().__init__(f'bag {bag} is truncated or corrupt{where}: {reason}')


class RawMessage(NamedTuple):
    topic: str
    msgtype: str      # e.g. 'sensor_msgs/msg/JointState'
    stamp_ns: int     # bag (receive) time, nanoseconds
    data: bytes       # CDR bytes, as recorded


def typestore():
    """rosbags Typestore (ROS 2 Kilted) with dp_msgs: the project's one, dp_policy_node.bag_types."""
    from dp_policy_node.bag_types import typestore as _typestore
    return _typestore()


def _check_folder(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise BagError(f'bag {p} does not exist')
    if p.is_file():
        raise BagError(f'bag {p} is a file; give the bag folder (the one holding metadata.yaml)')
    if not (p / 'metadata.yaml').is_file():
        raise BagError(f'bag {p} has no metadata.yaml (is it a rosbag2 folder?)')
    return p


def _open(path: str | Path):
    from rosbags.rosbag2 import Reader
    p = _check_folder(path)
    reader = Reader(p)
    try:
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for broken files
        raise CorruptBagError(str(p), f'cannot open: {type(exc).__name__}: {exc}') from exc
    return reader


def _metadata(path: str | Path) -> dict:
    """The bag's metadata.yaml (rosbag2_bagfile_information), read without opening the storage."""
    import yaml
    p = _check_folder(path)
    try:
        info = yaml.safe_load((p / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        info['topics_with_message_count']  # noqa: B018 - must exist
    except Exception as exc:  # noqa: BLE001
        raise CorruptBagError(str(p), f'unreadable metadata.yaml: {type(exc).__name__}: {exc}'
                              ) from exc
    return info


def bag_topics(path: str | Path) -> dict[str, str]:
    """topic -> message type, from the bag's metadata (no message is read)."""
    info = _metadata(path)
    return {e['topic_metadata']['name']: e['topic_metadata']['type']
            for e in info['topics_with_message_count']}


def bag_info(path: str | Path) -> dict:
    """Summary for reports: storage, duration, message counts per topic (from metadata.yaml)."""
    info = _metadata(path)
    topics = {e['topic_metadata']['name']: {'type': e['topic_metadata']['type'],
                                            'count': int(e.get('message_count', 0))}
              for e in info['topics_with_message_count']}
    return {
        'path': str(path),
        'storage': str(info.get('storage_identifier', 'unknown')),
        'duration_s': int(info.get('duration', {}).get('nanoseconds', 0)) * 1e-9,
        'start_s': int(info.get('starting_time', {}).get('nanoseconds_since_epoch', 0)) * 1e-9,
        'message_count': int(info.get('message_count', 0)),
        'topics': dict(sorted(topics.items())),
    }


def require_topics(path: str | Path, topics: Iterable[str]) -> dict[str, str]:
    """Raise MissingTopicError for the first topic not in the bag; returns bag_topics()."""
    present = bag_topics(path)
    for topic in topics:
        if topic not in present:
            raise MissingTopicError(str(path), topic, present)
    return present


def iter_raw(path: str | Path, topics: Optional[Sequence[str]] = None) -> Iterator[RawMessage]:
    """Raw messages in bag-time order; a fault mid-file raises CorruptBagError (after yielding
    everything that could be read)."""
    reader = _open(path)
    count, last = 0, None
    try:
        conns = [c for c in reader.connections if topics is None or c.topic in set(topics)]
        it = reader.messages(connections=conns)
        while True:
            try:
                conn, stamp, data = next(it)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - sqlite3/mcap/struct errors on broken files
                raise CorruptBagError(str(path), f'{type(exc).__name__}: {exc}', count, last) from exc
            count += 1
            last = stamp
            yield RawMessage(conn.topic, conn.msgtype, int(stamp), bytes(data))
        # A damaged chunk can be skipped silently by the storage reader: compare with metadata.
        expected = sum(c.msgcount for c in conns)
        if count < expected:
            raise CorruptBagError(str(path), f'metadata lists {expected} messages on the topics '
                                  f'read, only {count} could be read', count, last)
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a broken file may fail again
            pass


def deserialize(msg: RawMessage):
    """CDR bytes -> rosbags message object (fields as in rclpy)."""
    return typestore().deserialize_cdr(msg.data, msg.msgtype)


def connection_qos(path: str | Path) -> dict[str, list]:
    """topic -> offered QoS profiles recorded in the metadata (rosbags Qos objects, may be [])."""
    reader = _open(path)
    try:
        out: dict[str, list] = {}
        for c in reader.connections:
            ext = getattr(c, 'ext', None)
            out.setdefault(c.topic, list(getattr(ext, 'offered_qos_profiles', []) or []))
        return out
    finally:
        reader.close()
