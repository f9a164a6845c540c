"""Joint-state messages -> arrays in a fixed joint order, matched by name (pure numpy).

Messages (sensor_msgs/JointState, a JointTrajectory's names and points) may list joints in any
order and carry joints the policy does not use; the policy's arrays always follow its own
`joint_names`. `JointIndexer` caches the name -> index mapping for one message layout, so the
per-message cost on a hot path is one fancy-indexing call.

Results are `(array | None, reason)`: `reason` is '' on success, otherwise a short machine- and
human-readable code ('missing_joint:elbow', 'duplicate_joint:elbow' (a message that names one of
the joints twice is ambiguous: refused, never one of the two guessed), 'length_mismatch:names=3,positions=2',
'nan_position:elbow', 'no_velocities') that callers put into status messages and errors.

Not here: joint limits, units or filtering; reading ROS messages (callers pass `msg.name`,
`msg.position`, ...), so rclpy and rosbags messages work alike.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ['JointIndexer']


class JointIndexer:
    """Picks the values of `joint_names` (in that order) out of messages listing joints by name."""

    def __init__(self, joint_names: Sequence[str]) -> None:
        names = [str(n) for n in joint_names]
        if not names:
            raise ValueError('joint_names is empty')
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f'joint_names has duplicates: {dup}')
        self.joint_names = names
        self._cache_key: Optional[tuple[str, ...]] = None
        self._cache_idx: Optional[np.ndarray] = None
        self._cache_reason = ''

    def indices(self, msg_names: Sequence[str]) -> tuple[Optional[np.ndarray], str]:
        """Index of each of `joint_names` in `msg_names` -> ((J,) int array | None, reason)."""
        key = tuple(str(n) for n in msg_names)
        if key != self._cache_key:
            where, twice = {}, set()
            for i, n in enumerate(key):
                if n in where:
                    twice.add(n)
                where.setdefault(n, i)
            missing = [n for n in self.joint_names if n not in where]
            duplicated = [n for n in self.joint_names if n in twice]
            if duplicated:    # ambiguous before incomplete
                self._cache_idx, self._cache_reason = None, 'duplicate_joint:' + ','.join(duplicated)
            elif missing:
                self._cache_idx, self._cache_reason = None, 'missing_joint:' + ','.join(missing)
            else:
                self._cache_idx = np.array([where[n] for n in self.joint_names], dtype=np.intp)
                self._cache_reason = ''
            self._cache_key = key
        return self._cache_idx, self._cache_reason

    def _pick(self, msg_names: Sequence[str], values: Sequence[float], what: str
              ) -> tuple[Optional[np.ndarray], str]:
        idx, reason = self.indices(msg_names)
        if idx is None:
            return None, reason
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if vals.shape[0] != len(self._cache_key):
            return None, f'length_mismatch:names={len(self._cache_key)},{what}s={vals.shape[0]}'
        out = vals[idx]
        if not np.all(np.isfinite(out)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(out))]
            return None, f'nan_{what}:' + ','.join(bad)
        return out, ''

    def positions(self, msg_names: Sequence[str], msg_positions: Sequence[float]
                  ) -> tuple[Optional[np.ndarray], str]:
        """(J,) float64 positions in `joint_names` order, or (None, reason)."""
        return self._pick(msg_names, msg_positions, 'position')

    def velocities(self, msg_names: Sequence[str], msg_velocities: Sequence[float]
                   ) -> tuple[Optional[np.ndarray], str]:
        """(J,) float64 velocities, or (None, 'no_velocities') when the message carries none."""
        if len(msg_velocities) == 0:
            return None, 'no_velocities'
        return self._pick(msg_names, msg_velocities, 'velocity')

    def from_joint_state(self, msg) -> tuple[Optional[np.ndarray], str]:
        """Positions out of a sensor_msgs/JointState (rclpy or rosbags)."""
        return self.positions(msg.name, msg.position)
