"""Observation history of one robot and its alignment onto the policy's time grid (ROS-free).

The policy was trained on observations `n_obs_steps` apart by the dataset's `dt_s`. At run time
the streams (joint states at 100 Hz to 1 kHz, cameras at 10 to 30 Hz, each with its own latency)
are aligned by their **header stamps**, never by arrival order:

    t0   = the newest stamp that every stream has reached (min over streams of their newest stamp)
    grid = t0 - (n_obs_steps-1)*dt, ..., t0 - dt, t0            (oldest first)

and every stream contributes, for every grid time, its sample whose stamp is nearest to it (within
`tolerance`, dt/2 by default). t0 is the stamp of a real message (the newest of the stream that
lags most), so it is the stamp the published chunk carries.

    stamps   joint_states  | | | | | | | | | | | | | | | | | | | | |     (1 kHz ... 100 Hz)
             camera         |         |         |         |
    grid                              ^ t0-dt             ^ t0        (n_obs_steps = 2)

Memory is bounded whatever the input rate: each stream is a ring sorted by stamp, trimmed to a
time window behind its newest sample and to a maximum count. Images are stored as they arrive
(typically a zero-argument callable that converts the message) and decoded lazily, only when a
grid point selects them, outside the history's lock; the decoded array replaces the callable.

Nothing here knows ROS: stamps are integer nanoseconds, values are numpy arrays, and rejections are
short reason codes ('future_stamp', 'stale:/camera/image_raw', ...) that the node counts and shows
in dp_msgs/PolicyStatus. Not here: message conversion (dp_common), batching, inference, publishing.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

__all__ = ['ImageRejected', 'Skip', 'Observation', 'StampedRing', 'ObservationHistory',
           'ClockJumpDetector', 'JOINT_STREAM']

NS = 1_000_000_000
JOINT_STREAM = 'joint_states'   # stream key of the joint positions (cameras use their names)


class ImageRejected(ValueError):
    """Raised by an image callable that cannot produce a valid (H, W, 3) uint8 image.

    `counter` is the reason code the node counts ('unsupported_encoding', 'wrong_image_size', ...).
    """

    def __init__(self, counter: str, message: str = '') -> None:
        super().__init__(message or counter)
        self.counter = counter


@dataclass(frozen=True)
class Skip:
    """Why no observation could be formed. `reason` goes to PolicyStatus.last_skip_reason,
    `counter` is the key counted in PolicyStatus.skipped (or .rejected when `rejected`)."""

    reason: str
    counter: str
    rejected: bool = False
    detail: str = ''     # the converter's message, for the log
    stream: str = ''     # the stream key ('joint_states' or a camera name) it is about


@dataclass
class Observation:
    """One aligned observation window of one robot."""

    state: np.ndarray                    # (n_obs, S) float32, joints in the policy's order
    images: dict[str, np.ndarray]        # camera -> (n_obs, H, W, 3) uint8
    stamp_ns: int                        # t0: newest grid time = stamp of a real observation
    grid_ns: np.ndarray                  # (n_obs,) int64 grid times, oldest first
    stamps_ns: dict[str, np.ndarray] = field(default_factory=dict)  # stream -> (n_obs,) chosen stamps


class StampedRing:
    """Values sorted by int-ns stamp, bounded by `capacity` and by `window_ns` behind the newest.

    A sample with the stamp of one already held replaces it; one older than the window is dropped.
    Not thread-safe on its own (ObservationHistory holds the lock).
    """

    def __init__(self, capacity: int, window_ns: int) -> None:
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self.capacity = int(capacity)
        self.window_ns = int(window_ns)
        self.stamps: list[int] = []
        self.values: list[Any] = []

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def newest_ns(self) -> Optional[int]:
        return self.stamps[-1] if self.stamps else None

    def insert(self, stamp_ns: int, value: Any) -> bool:
        """Insert in stamp order; False when the sample is older than the window (dropped)."""
        stamps = self.stamps
        if stamps and stamp_ns < stamps[-1] - self.window_ns:
            return False
        if not stamps or stamp_ns > stamps[-1]:          # the usual case: in order
            stamps.append(stamp_ns)
            self.values.append(value)
        else:
            i = bisect.bisect_left(stamps, stamp_ns)
            if i < len(stamps) and stamps[i] == stamp_ns:
                self.values[i] = value
            else:
                stamps.insert(i, stamp_ns)
                self.values.insert(i, value)
        # trim: by the time window behind the newest, then by count (oldest first)
        cut = bisect.bisect_left(stamps, stamps[-1] - self.window_ns)
        cut = max(cut, len(stamps) - self.capacity)
        if cut > 0:
            del stamps[:cut]
            del self.values[:cut]
        return True

    def nearest(self, t_ns: int) -> int:
        """Index of the sample nearest to t_ns (ties: the older one). Ring must not be empty."""
        stamps = self.stamps
        i = bisect.bisect_left(stamps, t_ns)
        if i == 0:
            return 0
        if i == len(stamps):
            return i - 1
        return i - 1 if t_ns - stamps[i - 1] <= stamps[i] - t_ns else i

    def remove_stamp(self, stamp_ns: int) -> None:
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            del self.stamps[i]
            del self.values[i]

    def clear(self) -> None:
        self.stamps.clear()
        self.values.clear()


ImageValue = Union[np.ndarray, Callable[[], np.ndarray]]


class ObservationHistory:
    """Bounded, stamp-sorted history of the joint positions and camera images of one robot.

    Thread-safe: inserts (executor thread) and `sample` (inference thread) may run concurrently.
    All times are int nanoseconds in the node's clock (ROS time, or simulated time).
    """

    def __init__(self, joint_dim: int, camera_names: Sequence[str], n_obs_steps: int,
                 dt_s: float, max_age_s: float, *, tolerance_s: Optional[float] = None,
                 max_future_s: float = 0.1, image_hw: Optional[tuple[int, int]] = None,
                 joint_capacity: int = 4096, image_capacity: int = 16,
                 labels: Optional[dict[str, str]] = None) -> None:
        if joint_dim < 1:
            raise ValueError(f'joint_dim must be >= 1, got {joint_dim}')
        if n_obs_steps < 1:
            raise ValueError(f'n_obs_steps must be >= 1, got {n_obs_steps}')
        if not dt_s > 0 or not max_age_s > 0:
            raise ValueError(f'dt_s and max_age_s must be > 0, got {dt_s}, {max_age_s}')
        if len(set(camera_names)) != len(camera_names) or JOINT_STREAM in camera_names:
            raise ValueError(f'camera names must be unique and not {JOINT_STREAM!r}: {camera_names}')
        self.joint_dim = int(joint_dim)
        self.camera_names = [str(c) for c in camera_names]
        self.n_obs_steps = int(n_obs_steps)
        self.dt_ns = int(round(dt_s * NS))
        self.max_age_ns = int(round(max_age_s * NS))
        tol = 0.5 * dt_s if tolerance_s is None or tolerance_s <= 0 else tolerance_s
        self.tolerance_ns = int(round(tol * NS))
        self.max_future_ns = int(round(max(0.0, max_future_s) * NS))
        self.image_hw = None if image_hw is None else (int(image_hw[0]), int(image_hw[1]))
        # What `sample` may need behind a stream's newest stamp: t0 may lag it by up to max_age
        # (else the lagging stream is stale), the grid reaches (n_obs-1)*dt further back, plus
        # the tolerance. Samples older than this window are dropped on insert.
        self.window_ns = self.max_age_ns + (self.n_obs_steps - 1) * self.dt_ns + self.tolerance_ns
        self.labels = {JOINT_STREAM: JOINT_STREAM, **{c: c for c in self.camera_names},
                       **(labels or {})}
        self._lock = threading.Lock()
        self._rings: dict[str, StampedRing] = {JOINT_STREAM: StampedRing(joint_capacity, self.window_ns)}
        for cam in self.camera_names:
            self._rings[cam] = StampedRing(image_capacity, self.window_ns)

    # ------------------------------------------------------------------ inserts
    def _check_stamp(self, stamp_ns: int, now_ns: Optional[int]) -> str:
        if stamp_ns <= 0:
            return 'zero_stamp'
        if now_ns is None:
            return ''
        if now_ns <= 0:
            return 'no_clock'          # use_sim_time and no /clock received yet
        if stamp_ns > now_ns + self.max_future_ns:
            return 'future_stamp'
        if stamp_ns < now_ns - self.window_ns:
            return 'old_stamp'
        return ''

    def insert_joint_state(self, stamp_ns: int, q: np.ndarray, now_ns: Optional[int] = None) -> str:
        """Store joint positions (S,) in the policy's order. Returns '' or a rejection code."""
        reason = self._check_stamp(int(stamp_ns), now_ns)
        if reason:
            return reason
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape[0] != self.joint_dim:
            return 'joint_count'
        if not np.all(np.isfinite(q)):
            return 'nan_position'
        with self._lock:
            ok = self._rings[JOINT_STREAM].insert(int(stamp_ns), q.copy())
        return '' if ok else 'old_stamp'

    def insert_image(self, camera: str, stamp_ns: int, image: ImageValue,
                     now_ns: Optional[int] = None) -> str:
        """Store an image: an (H, W, 3) uint8 array or a callable returning one (decoded lazily,
        may raise ImageRejected). Returns '' or a rejection code."""
        if camera not in self.camera_names:
            raise KeyError(f'unknown camera {camera!r}; expected one of {self.camera_names}')
        reason = self._check_stamp(int(stamp_ns), now_ns)
        if reason:
            return reason
        if isinstance(image, np.ndarray):
            reason = self._check_image(image)
            if reason:
                return reason
        elif not callable(image):
            raise TypeError(f'image must be an array or a callable, got {type(image).__name__}')
        with self._lock:
            ok = self._rings[camera].insert(int(stamp_ns), image)
        return '' if ok else 'old_stamp'

    def _check_image(self, img: np.ndarray) -> str:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
            return 'bad_image_format'
        if self.image_hw is not None and tuple(img.shape[:2]) != self.image_hw:
            return 'wrong_image_size'
        return ''

    # ------------------------------------------------------------------ queries
    def clear(self) -> None:
        with self._lock:
            for ring in self._rings.values():
                ring.clear()

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {k: len(r) for k, r in self._rings.items()}

    def newest_ns(self) -> dict[str, Optional[int]]:
        """Newest stamp per stream (None if empty)."""
        with self._lock:
            return {k: r.newest_ns for k, r in self._rings.items()}

    def latest(self, stream: str) -> Optional[tuple[int, Any]]:
        """(stamp_ns, value) of the newest sample of a stream (joint positions in the policy's
        order, or an image / its pending converter), None while it is empty."""
        with self._lock:
            ring = self._rings[stream]
            return (ring.stamps[-1], ring.values[-1]) if len(ring) else None

    def newest_common_ns(self) -> Optional[int]:
        """t0: the newest stamp every stream has reached, None while a stream is empty."""
        with self._lock:
            newest = [r.newest_ns for r in self._rings.values()]
        if any(n is None for n in newest):
            return None
        return min(newest)

    def sample(self, now_ns: int) -> Union[Observation, Skip]:
        """Align every stream on the grid ending at t0 (see the module docstring).

        Returns an Observation, or a Skip: 'missing:<stream>' (nothing received yet),
        'stale:<stream>' (t0 older than max_age against now_ns), 'misaligned:<stream>' (no sample
        within the tolerance of a grid time), '<code>:<camera>' (an image failed to decode; that
        image is dropped, counted as rejected).
        """
        n = self.n_obs_steps
        with self._lock:
            for key, ring in self._rings.items():
                if not len(ring):
                    return Skip(f'missing:{self.labels[key]}', 'missing', stream=key)
            newest = {k: r.newest_ns for k, r in self._rings.items()}
            lag_key = min(newest, key=lambda k: newest[k])
            t0 = newest[lag_key]
            if now_ns - t0 > self.max_age_ns:
                return Skip(f'stale:{self.labels[lag_key]}', 'stale', stream=lag_key)
            grid = t0 - self.dt_ns * np.arange(n - 1, -1, -1, dtype=np.int64)   # (n,) oldest first
            chosen: dict[str, list[tuple[int, Any]]] = {}
            for key, ring in self._rings.items():
                picks = []
                for g in grid.tolist():
                    i = ring.nearest(g)
                    if abs(ring.stamps[i] - g) > self.tolerance_ns:
                        return Skip(f'misaligned:{self.labels[key]}', 'misaligned', stream=key)
                    picks.append((ring.stamps[i], ring.values[i]))
                chosen[key] = picks

        # Decode the chosen images outside the lock, so that inserts keep flowing.
        images: dict[str, np.ndarray] = {}
        for cam in self.camera_names:
            frames = []
            for stamp, value in chosen[cam]:
                img, skip = self._materialize(cam, stamp, value)
                if skip is not None:
                    return skip
                frames.append(img)
            images[cam] = np.stack(frames)                                   # (n, H, W, 3)
        state = np.stack([v for _, v in chosen[JOINT_STREAM]]).astype(np.float32)   # (n, S)
        stamps = {k: np.array([s for s, _ in v], dtype=np.int64) for k, v in chosen.items()}
        return Observation(state=state, images=images, stamp_ns=int(t0), grid_ns=grid,
                           stamps_ns=stamps)

    def _materialize(self, cam: str, stamp: int, value: ImageValue
                     ) -> tuple[Optional[np.ndarray], Optional[Skip]]:
        if isinstance(value, np.ndarray):
            return value, None
        try:
            img = np.asarray(value())
            code = self._check_image(img)
            if code:
                raise ImageRejected(code, f'{img.dtype} {img.shape}')
        except ImageRejected as err:
            code, detail = err.counter, str(err)
        except Exception as err:  # a converter bug must not kill the inference thread
            code, detail = 'image_conversion_error', f'{type(err).__name__}: {err}'
        else:
            with self._lock:   # cache the decoded image in place of the callable
                ring = self._rings[cam]
                i = bisect.bisect_left(ring.stamps, stamp)
                if i < len(ring.stamps) and ring.stamps[i] == stamp and ring.values[i] is value:
                    ring.values[i] = img
            return img, None
        with self._lock:
            ring = self._rings[cam]
            i = bisect.bisect_left(ring.stamps, stamp)
            if i < len(ring.stamps) and ring.stamps[i] == stamp and ring.values[i] is value:
                ring.remove_stamp(stamp)
        return None, Skip(f'{code}:{self.labels[cam]}', code, rejected=True, detail=detail,
                          stream=cam)


class ClockJumpDetector:
    """Detects the node's clock going backwards by more than `threshold_s` (a bag replay that
    restarts, a simulation reset), so that histories from two episodes are never mixed."""

    def __init__(self, threshold_s: float = 0.25) -> None:
        self.threshold_ns = int(round(max(0.0, threshold_s) * NS))
        self.last_ns: Optional[int] = None
        self.jumps = 0
        self._lock = threading.Lock()

    def update(self, now_ns: int) -> bool:
        """Feed the current time; True exactly when it jumped backwards (then it restarts)."""
        with self._lock:
            last = self.last_ns
            if last is None or now_ns >= last:
                self.last_ns = now_ns
                return False
            if last - now_ns > self.threshold_ns:
                self.last_ns = now_ns
                self.jumps += 1
                return True
            return False   # small backwards step (NTP slew, thread interleaving): ignore
