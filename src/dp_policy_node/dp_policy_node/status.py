"""What policy_node reports in its status, accumulated (ROS-free; the node fills PolicyStatus).

`StreamStats`: per input topic, messages received, their rate and the newest accepted stamp.
`StatusBook`: the node's counters (rejected inputs, skipped ticks by reason), the chunks
published and their output rate, the windows of inference latency and observation-to-publish
age; thread-safe (the inference thread, the executor and the status timer all write or read it).
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


class StreamStats:
    """Receive counter, rate and newest accepted stamp of one input topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.received = 0
        self.newest_ns: Optional[int] = None
        self._count_at_mark = 0
        self.rate_hz = 0.0

    def accepted(self, stamp_ns: int) -> None:
        self.newest_ns = stamp_ns if self.newest_ns is None else max(self.newest_ns, stamp_ns)

    def mark(self, elapsed_s: float) -> None:
        if elapsed_s > 0:
            self.rate_hz = (self.received - self._count_at_mark) / elapsed_s
        self._count_at_mark = self.received


@dataclass
class StatusSnapshot:
    chunks_published: int = 0
    output_rate_hz: float = 0.0
    rejected: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    latency_p50_s: float = 0.0
    latency_p99_s: float = 0.0
    latency_max_s: float = 0.0
    observation_to_publish_p50_s: float = 0.0
    # Guidance: of the last published chunk (NaN without guidance), and the smallest clearance
    # of the chunks published in the window.
    limit_margin_rad: float = math.nan
    clearance_m: float = math.nan
    selection_cost: float = math.nan
    min_clearance_m: float = math.nan


class StatusBook:
    """Counters and windows of the node (see the module docstring)."""

    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self._rejected: collections.Counter = collections.Counter()
        self._skipped: collections.Counter = collections.Counter()
        self._latency = collections.deque(maxlen=window)
        self._obs_to_pub = collections.deque(maxlen=window)
        self._chunks = 0
        self._chunks_at_mark = 0
        self._rate_hz = 0.0
        self._mark_time = time.monotonic()
        self._safety = (math.nan, math.nan, math.nan)
        self._clearance = collections.deque(maxlen=window)

    def rejected(self, code: str) -> None:
        """An input refused; `code` as 'reason' or 'reason:detail' (counted by reason)."""
        with self._lock:
            self._rejected[code.split(':', 1)[0]] += 1

    def skipped(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._skipped[reason] += n

    def chunk_published(self, latency_s: float, observation_age_s: float) -> None:
        with self._lock:
            self._chunks += 1
            self._latency.append(float(latency_s))
            self._obs_to_pub.append(float(observation_age_s))

    def chosen_safety(self, limit_margin_rad: float, clearance_m: float, cost: float) -> None:
        """Guidance's assessment of the chunk about to be published."""
        with self._lock:
            self._safety = (limit_margin_rad, clearance_m, cost)
            self._clearance.append(clearance_m)

    def snapshot(self) -> tuple[StatusSnapshot, float]:
        """The numbers now, and the seconds since the previous snapshot (the rates' window)."""
        t = time.monotonic()
        with self._lock:
            elapsed, self._mark_time = t - self._mark_time, t
            if elapsed > 0:
                self._rate_hz = (self._chunks - self._chunks_at_mark) / elapsed
            self._chunks_at_mark = self._chunks
            snap = StatusSnapshot(chunks_published=self._chunks, output_rate_hz=float(self._rate_hz),
                                  rejected=dict(self._rejected), skipped=dict(self._skipped))
            lat = np.array(self._latency) if self._latency else None
            snap.limit_margin_rad, snap.clearance_m, snap.selection_cost = self._safety
            snap.min_clearance_m = min(self._clearance) if self._clearance else math.nan
            self._clearance.clear()
            o2p = np.array(self._obs_to_pub) if self._obs_to_pub else None
        if lat is not None:
            snap.latency_p50_s, snap.latency_p99_s = (float(v) for v in np.percentile(lat, [50, 99]))
            snap.latency_max_s = float(lat.max())
        if o2p is not None:
            snap.observation_to_publish_p50_s = float(np.percentile(o2p, 50))
        return snap, elapsed
