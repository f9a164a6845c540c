"""rosbag2 access for evaluation: open, check topics, iterate raw CDR messages (ROS-free).

What it is: the thin layer over `rosbags` that dp_eval's player and comparisons use. It reads
rosbag2 folders (metadata.yaml + sqlite3 or mcap files) as written by `ros2 bag record` or by
rosbags' Writer, gives clear errors for a missing topic (naming it and listing the topics that are
present) and for a truncated or corrupt file (naming the file and how far reading got), and knows
the project's own message types (dp_msgs, through dp_common.bags).

What it is not: a decoder of observations onto the policy's grid. Offline replay and the ground
truth of live replay use `dp_policy.data.dataset.load_episodes` (one bag decoder in the project).
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
    msgdef: str = ''  # the message definition the bag stores for its topic ('' if none)


def typestore():
    """rosbags Typestore (ROS 2 Kilted) with dp_msgs: the project's one, dp_common.bags."""
    from dp_common.bags import typestore as _typestore
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
            yield RawMessage(conn.topic, conn.msgtype, int(stamp), bytes(data),
                             _definition(conn))
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
    """CDR bytes -> rosbags message object (fields as in rclpy), read with the definition the bag
    stores for its topic where that differs from today's (a bag recorded before a dp_msgs type
    gained a field stays readable; the new field is then absent from the object)."""
    store = typestore()
    if msg.msgdef and _normalised(msg.msgdef) != _current_definition(msg.msgtype):
        store = _store_for(msg.msgtype, msg.msgdef)
    return store.deserialize_cdr(msg.data, msg.msgtype)


def _definition(conn) -> str:
    md = getattr(conn, 'msgdef', None)
    return str(getattr(md, 'data', md) or '')


def _normalised(text: str) -> str:
    """A message definition without comments, blank lines and surrounding spaces."""
    lines = (line.split('#', 1)[0].strip() for line in text.splitlines())
    return '\n'.join(line for line in lines if line)


_DEFINITIONS: dict = {}
_STORES: dict = {}


def _current_definition(msgtype: str) -> str:
    if msgtype not in _DEFINITIONS:
        try:
            _DEFINITIONS[msgtype] = _normalised(typestore().generate_msgdef(msgtype)[0])
        except Exception:  # noqa: BLE001 - a type today's store lacks: the bag's own is all there is
            _DEFINITIONS[msgtype] = None
    return _DEFINITIONS[msgtype]


def _store_for(msgtype: str, msgdef: str):
    """A typestore with `msgtype` (and its dependencies) as the bag defines them."""
    key = (msgtype, msgdef)
    if key not in _STORES:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
        store = get_typestore(Stores.ROS2_KILTED)
        types = get_types_from_msg(msgdef, msgtype)
        store.register({name: t for name, t in types.items() if name not in store.fielddefs
                        or name == msgtype})
        _STORES[key] = store
    return _STORES[key]


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


# ------------------------------------------------------------------------------------------
# Salvage: the readable part of a truncated or corrupt bag

def _salvage_sqlite(db: Path) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, type, log_ns, data) rows of a rosbag2 .db3 in insertion order, until the first
    unreadable row. A truncated file is first padded with zero pages to the size its header
    declares (sqlite refuses a short file outright); rows on missing pages then fail one by one."""
    import shutil
    import sqlite3
    import tempfile
    with tempfile.TemporaryDirectory(prefix='dp_eval_salvage_') as tmp:
        copy = Path(tmp) / db.name
        shutil.copyfile(db, copy)
        head = copy.read_bytes()[:100]
        if len(head) == 100 and head.startswith(b'SQLite format 3\x00'):
            page = int.from_bytes(head[16:18], 'big')
            page = 65536 if page == 1 else page
            want = page * int.from_bytes(head[28:32], 'big')
            have = copy.stat().st_size
            if want > have:
                with open(copy, 'ab') as fh:
                    fh.write(b'\x00' * (want - have))
        con = sqlite3.connect(f'file:{copy}?mode=ro&immutable=1', uri=True)
        try:
            topics = {int(i): (str(n), str(t)) for i, n, t in
                      con.execute('SELECT id, name, type FROM topics')}
            rid = 0
            while True:
                row = con.execute('SELECT id, topic_id, timestamp, data FROM messages WHERE id > ? '
                                  'ORDER BY id LIMIT 1', (rid,)).fetchone()
                if row is None:
                    return
                rid, tid, ts, data = row
                if tid in topics:
                    yield topics[tid][0], topics[tid][1], int(ts), bytes(data)
        finally:
            con.close()


def _mcap_records(buf: bytes, pos: int = 0) -> Iterator[tuple[int, bytes]]:
    """(opcode, content) of whole records in buf from pos; stops at the first incomplete one."""
    import struct
    n = len(buf)
    while pos + 9 <= n:
        op = buf[pos]
        (length,) = struct.unpack_from('<Q', buf, pos + 1)
        end = pos + 9 + length
        if op == 0x06 and end > n:       # truncated chunk: its records up to the cut
            yield op, buf[pos + 9:n]
            return
        if end > n:
            return
        yield op, buf[pos + 9:end]
        pos = end


def _salvage_mcap(file: Path) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, schema name, log_ns, data) of every whole Message record before the damage."""
    import struct
    data = file.read_bytes()
    if not data.startswith(b'\x89MCAP0\r\n'):
        raise ValueError('not an MCAP file (bad magic)')
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, int]] = {}

    def s(buf: bytes, p: int) -> tuple[str, int]:
        (ln,) = struct.unpack_from('<I', buf, p)
        return buf[p + 4:p + 4 + ln].decode('utf-8', 'replace'), p + 4 + ln

    def walk(buf: bytes, nested: bool) -> Iterator[tuple[str, str, int, bytes]]:
        for op, c in _mcap_records(buf):
            if op == 0x03:                                    # Schema
                (sid,) = struct.unpack_from('<H', c, 0)
                schemas[sid] = s(c, 2)[0]
            elif op == 0x04:                                  # Channel
                (cid, sid) = struct.unpack_from('<HH', c, 0)
                topic, _ = s(c, 4)
                channels[cid] = (topic, sid)
            elif op == 0x05:                                  # Message
                cid, _seq, log_time, _pub = struct.unpack_from('<HIQQ', c, 0)
                if cid in channels:
                    topic, sid = channels[cid]
                    yield topic, schemas.get(sid, ''), int(log_time), bytes(c[22:])
            elif op == 0x06 and not nested:                   # Chunk
                p = 8 + 8 + 8 + 4                             # start, end, uncompressed size, crc
                comp, p = s(c, p)
                (size,) = struct.unpack_from('<Q', c, p)
                records = c[p + 8:p + 8 + size]
                if comp == 'zstd':
                    import zstandard
                    records = zstandard.ZstdDecompressor().decompressobj().decompress(records)
                elif comp == 'lz4':
                    import lz4.frame
                    records = lz4.frame.LZ4FrameDecompressor().decompress(records)
                elif comp:
                    raise ValueError(f'unknown MCAP chunk compression {comp!r}')
                yield from walk(records, True)
            elif op == 0x0F:                                  # Footer: the data part is over
                return
    yield from walk(data[8:], False)


def _mcap_intact(file: Path) -> bool:
    """The file ends with the MCAP magic (it was closed properly)."""
    with open(file, 'rb') as fh:
        fh.seek(0, 2)
        if fh.tell() < 16:
            return False
        fh.seek(-8, 2)
        return fh.read(8) == b'\x89MCAP0\r\n'


def salvage(path: str | Path, dst: str | Path) -> tuple[Path, int]:
    """Copy what can be read of a damaged bag into a new bag `dst` (same storage format, topics
    and types from metadata.yaml); returns (dst, messages copied). Raises BagError when nothing
    can be read."""
    from dp_common.bags import BagWriter
    src = _check_folder(path)
    types = bag_topics(src)
    files = sorted(p for p in src.iterdir() if p.suffix in ('.db3', '.mcap'))
    if not files:
        raise BagError(f'bag {src}: no .db3 or .mcap file to salvage')
    storage = 'mcap' if files[0].suffix == '.mcap' else 'sqlite3'
    store = typestore()
    count = 0
    dst = Path(dst)
    with BagWriter(dst, storage=storage) as w:
        for f in files:
            it = _salvage_mcap(f) if storage == 'mcap' else _salvage_sqlite(f)
            pending = None   # an MCAP record cut by the damage may still look whole: hold one back
            try:
                for topic, msgtype, log_ns, data in it:
                    msgtype = types.get(topic, msgtype)
                    try:
                        store.deserialize_cdr(data, msgtype)
                    except Exception:  # noqa: BLE001 - damaged bytes: the salvage ends here
                        pending = None
                        break
                    if pending is not None:
                        w.write_raw(*pending)
                        count += 1
                    pending = (topic, msgtype, data, log_ns)
                else:
                    if pending is not None and storage == 'sqlite3':
                        w.write_raw(*pending)   # sqlite rows end at page boundaries: all whole
                        count += 1
                    elif pending is not None and _mcap_intact(f):
                        w.write_raw(*pending)
                        count += 1
            except Exception:  # noqa: BLE001 - the damage: keep what was copied
                pass
    if count == 0:
        raise BagError(f'bag {src}: nothing could be salvaged')
    return dst, count
