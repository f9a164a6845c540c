"""Closed-loop episode bookkeeping and summary (ROS-free, numpy only).

What it is: the arithmetic of dp_eval's closed-loop runner, apart from ROS so that tests can feed
it known streams. One `EpisodeTracker` per episode receives, in arrival order,
- task status samples (the fields of dp_msgs/TaskStatus: episode, episode_time_s, distance_m,
  success, obstacle_contact, side, done, min_clearance_m),
- commands the follower sent to the robot (positions with their simulated time),
- policy chunks (inference latency of each dp_msgs/ActionChunk),
- follower status samples (its own command jerk estimate),
and `result()` gives the per-episode record; `summarize()` aggregates many records into success
rate, time to success, obstacle contacts, the smallest arm-obstacle clearance, left/right split, command jerk and policy latency.

Command jerk: the command stream (forward commands arrive at the follower's rate, stamped with the
simulated clock, which advances in the simulation's control steps) is resampled on a uniform grid
of `jerk_dt_s` (linear interpolation, the last command per stamp), then the third finite
difference / dt^3 (rad/s^3). RMS and max over the episode, all joints. Where the evaluator
received no command for longer than 3 x `jerk_dt_s` (it ran late on a loaded machine and DDS
dropped samples of the depth-1 command publisher: 306 gaps of 0.1-0.2 s in a 50-episode demo on
2 cores while the runner spun rclpy's MultiThreadedExecutor, 0 in 10 episodes with its
SingleThreadedExecutor), the stream is cut there and
each part is measured alone: a straight line across the gap and the kink at its ends are the
evaluator's, not the follower's (whose own estimate comes with its status). The gaps are counted
(`command_gaps`).

What it is not: anything that talks to ROS (closed_loop.py) or draws (report.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from dp_common import metrics

__all__ = ['EpisodeResult', 'EpisodeTracker', 'command_jerk', 'summarize_episodes']


@dataclass
class EpisodeResult:
    index: int                        # 0-based position in the run
    episode: int                      # the simulation's episode number
    seed: int
    success: bool = False
    done: bool = False                # the simulation declared the episode over
    timed_out: bool = False           # the runner gave up waiting (wall-clock timeout)
    time_to_success_s: Optional[float] = None   # simulated seconds from the episode start
    episode_time_s: float = 0.0       # last reported episode time (simulated s)
    obstacle_contact: bool = False
    side: str = ''                    # 'left' / 'right' / '' (never decided)
    min_distance_m: float = float('nan')
    min_clearance_m: float = float('nan')   # smallest arm-obstacle distance the task reported
    final_distance_m: float = float('nan')
    chunks: int = 0
    latency_s: list = field(default_factory=list)    # inference latency per chunk
    commands: int = 0
    jerk_rms_rad_s3: float = float('nan')
    jerk_max_rad_s3: float = float('nan')
    command_gaps: int = 0             # reception gaps > 3 jerk_dt_s in the command stream
    follower_jerk_max_rad_s3: float = float('nan')   # as the follower reports it
    # RMS over the episode of the follower's own jerk (its command times, FollowerStatus)
    follower_jerk_rms_rad_s3: float = float('nan')
    follower_jerk_terms: int = 0      # the terms of that RMS (runs combine episodes by them)
    # the follower's chunk boundary step: at each entry, how far the new chunk moved the plan one
    # chunk step ahead (rad, max over the joints and the episode's entries; FollowerStatus)
    follower_boundary_step_max_rad: float = float('nan')
    # chunk boundaries: at each chunk's arrival, how far it is from the chunk before it at that
    # time (the step the follower has to absorb by switching, blending or averaging), rad, max
    # over the joints; the largest and the mean of the episode
    boundary_step_max_rad: float = float('nan')
    boundary_step_mean_rad: float = float('nan')
    wall_s: float = 0.0
    error: str = ''

    def to_dict(self) -> dict:
        d = asdict(self)
        d['latency_s'] = [float(v) for v in self.latency_s]
        return d


def command_jerk(t_s: Sequence[float], q: Sequence[Sequence[float]], dt_s: float = 0.02,
                 max_gap_s: Optional[float] = None) -> tuple[float, float, int]:
    """(rms, max |jerk|) in rad/s^3 of a command stream (t_s (N,), q (N, J)), and the number of
    gaps longer than max_gap_s (default 3 dt_s) it was cut at; NaN when too short."""
    nan = float('nan')
    t = np.asarray(t_s, dtype=np.float64)
    if len(t) < 4:
        return nan, nan, 0
    q = np.asarray(q, dtype=np.float64).reshape(len(t), -1)
    order = np.argsort(t, kind='stable')
    t, q = t[order], q[order]
    # the last command per distinct stamp (a coarse clock gives several commands one stamp)
    last = np.r_[t[1:] != t[:-1], True]
    t, q = t[last], q[last]
    gap = 3.0 * dt_s if max_gap_s is None else float(max_gap_s)
    cuts = np.flatnonzero(np.diff(t) > gap) + 1
    parts = []
    for ts, qs in zip(np.split(t, cuts), np.split(q, cuts)):
        if len(ts) < 4 or ts[-1] - ts[0] < 4 * dt_s:
            continue
        grid = np.arange(ts[0], ts[-1] + 1e-12, dt_s)
        qg = np.stack([np.interp(grid, ts, qs[:, j]) for j in range(qs.shape[1])], axis=1)  # (G, J)
        j = metrics.jerk(qg[None], dt_s)[0]                                                 # (G-3, J)
        if j.size:
            parts.append(j.ravel())
    if not parts:
        return nan, nan, len(cuts)
    j = np.concatenate(parts)
    return float(np.sqrt(np.mean(j ** 2))), float(np.max(np.abs(j))), len(cuts)


class EpisodeTracker:
    """Accumulates the streams of one episode (see module docstring)."""

    def __init__(self, index: int, episode: int, seed: int, jerk_dt_s: float = 0.02):
        self.res = EpisodeResult(index=index, episode=int(episode), seed=int(seed))
        self.jerk_dt_s = jerk_dt_s
        self._cmd_t: list[float] = []
        self._cmd_q: list[np.ndarray] = []
        self._distances: list[float] = []
        self._prev_chunk = None                  # (times (N,), positions (N, J)) of the last chunk
        self._boundary_steps: list[float] = []
        self._follower_jerk_sq, self._follower_jerk_terms = 0.0, 0

    @property
    def done(self) -> bool:
        return self.res.done

    def on_status(self, episode: int, episode_time_s: float, distance_m: float, success: bool,
                  obstacle_contact: bool, side: str, done: bool,
                  min_clearance_m: float = float('nan')) -> bool:
        """Feed one task status; returns True when it belongs to this episode."""
        if int(episode) != self.res.episode:
            return False
        r = self.res
        r.episode_time_s = float(episode_time_s)
        if np.isfinite(distance_m):
            self._distances.append(float(distance_m))
        if success and r.time_to_success_s is None:
            r.time_to_success_s = float(episode_time_s)
        r.success = r.success or bool(success)
        r.obstacle_contact = r.obstacle_contact or bool(obstacle_contact)
        c = float(min_clearance_m)
        if not np.isnan(c) and not c >= r.min_clearance_m:      # the first value, or a smaller one
            r.min_clearance_m = c
        if side:
            r.side = str(side)
        r.done = r.done or bool(done)
        return True

    def on_command(self, t_s: float, positions: Sequence[float]) -> None:
        self._cmd_t.append(float(t_s))
        self._cmd_q.append(np.asarray(positions, dtype=np.float64))

    def on_chunk(self, inference_latency_s: float, stamp_s: Optional[float] = None,
                 t_from_start_s: Optional[Sequence[float]] = None, positions=None,
                 arrival_s: Optional[float] = None) -> None:
        """A published chunk: its latency and, where given, its points (t_from_start_s (N,)
        from its stamp, positions (N, J)) and its arrival time on the same clock as the stamp,
        for the step from the previous chunk at that arrival (boundary_step_*)."""
        self.res.chunks += 1
        self.res.latency_s.append(float(inference_latency_s))
        if positions is None or stamp_s is None or arrival_s is None:
            return
        t = float(stamp_s) + np.asarray(t_from_start_s, dtype=np.float64)
        q = np.asarray(positions, dtype=np.float64)
        if q.ndim != 2 or q.shape[0] != t.shape[0] or q.shape[0] < 2:
            return
        prev, self._prev_chunk = self._prev_chunk, (t, q)
        if prev is None or prev[1].shape[1] != q.shape[1]:
            return
        at = float(arrival_s)
        if not (prev[0][0] <= at <= prev[0][-1] and t[0] <= at <= t[-1]):
            return                               # the chunks do not both cover the arrival
        step = max(abs(np.interp(at, t, q[:, j]) - np.interp(at, prev[0], prev[1][:, j]))
                   for j in range(q.shape[1]))
        self._boundary_steps.append(float(step))

    def on_follower_status(self, command_jerk_max_rad_s3: float,
                           command_jerk_rms_rad_s3: float = float('nan'), command_jerk_terms: int = 0,
                           boundary_step_max_rad: float = float('nan')) -> None:
        """A FollowerStatus: its window's jerk (max, RMS over `terms` terms) and largest chunk
        boundary step, folded into the episode's."""
        r = self.res
        v = float(command_jerk_max_rad_s3)
        if np.isfinite(v):
            cur = r.follower_jerk_max_rad_s3
            r.follower_jerk_max_rad_s3 = v if not np.isfinite(cur) else max(cur, v)
        rms, n = float(command_jerk_rms_rad_s3), int(command_jerk_terms)
        if n > 0 and np.isfinite(rms):
            self._follower_jerk_sq += n * rms * rms
            self._follower_jerk_terms += n
            r.follower_jerk_terms = self._follower_jerk_terms
            r.follower_jerk_rms_rad_s3 = float(np.sqrt(self._follower_jerk_sq / self._follower_jerk_terms))
        b = float(boundary_step_max_rad)
        if np.isfinite(b) and not b <= r.follower_boundary_step_max_rad:
            r.follower_boundary_step_max_rad = b

    def result(self) -> EpisodeResult:
        r = self.res
        if self._distances:
            r.min_distance_m = float(np.min(self._distances))
            r.final_distance_m = float(self._distances[-1])
        if self._boundary_steps:
            r.boundary_step_max_rad = float(np.max(self._boundary_steps))
            r.boundary_step_mean_rad = float(np.mean(self._boundary_steps))
        r.commands = len(self._cmd_t)
        widths = {len(q) for q in self._cmd_q}
        if len(widths) == 1:
            r.jerk_rms_rad_s3, r.jerk_max_rad_s3, r.command_gaps = command_jerk(
                self._cmd_t, np.stack(self._cmd_q) if self._cmd_q else [], self.jerk_dt_s)
        return r


def _clearance_stats(values) -> dict:
    """Over the episodes' smallest arm-obstacle distances: the smallest, the 5th percentile and
    the median (m; nan where the task reported none)."""
    v = np.array([float(x) for x in values if x is not None and not np.isnan(float(x))])
    if not len(v):
        return {'min': float('nan'), 'p5': float('nan'), 'median': float('nan')}
    return {'min': float(v.min()), 'p5': float(np.percentile(v, 5)),
            'median': float(np.median(v))}


def _mean(xs) -> float:
    xs = [float(x) for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float('nan')


def _rms_by_terms(rs) -> float:
    """The follower's jerk RMS over every command of the run: sqrt(sum(n rms^2) / sum(n))."""
    pairs = [(int(r.get('follower_jerk_terms', 0)), float(r.get('follower_jerk_rms_rad_s3', np.nan)))
             for r in rs]
    pairs = [(n, v) for n, v in pairs if n > 0 and np.isfinite(v)]
    total = sum(n for n, _ in pairs)
    return float(np.sqrt(sum(n * v * v for n, v in pairs) / total)) if total else float('nan')


def _median(xs) -> float:
    xs = [float(x) for x in xs if x is not None and np.isfinite(x)]
    return float(np.median(xs)) if xs else float('nan')


def summarize_episodes(results: Sequence[EpisodeResult | dict]) -> dict:
    """Aggregate per-episode records into the closed-loop metrics block of the JSON."""
    rs = [r if isinstance(r, dict) else r.to_dict() for r in results]
    n = len(rs)
    succ = [r for r in rs if r['success']]
    tts = [r['time_to_success_s'] for r in succ if r['time_to_success_s'] is not None]
    sides_succ = {s: sum(1 for r in succ if r['side'] == s) for s in ('left', 'right')}
    sides_all = {s: sum(1 for r in rs if r['side'] == s) for s in ('left', 'right')}
    lat = [v for r in rs for v in r['latency_s']]
    return {
        'episodes': n,
        'successes': len(succ),
        'success_rate': len(succ) / n if n else float('nan'),
        'timeouts': sum(1 for r in rs if r['timed_out']),
        'errors': sum(1 for r in rs if r['error']),
        'time_to_success_s': {
            'mean': _mean(tts),
            'median': float(np.median(tts)) if tts else float('nan'),
            'max': float(np.max(tts)) if tts else float('nan'),
        },
        'obstacle_contacts': sum(1 for r in rs if r['obstacle_contact']),
        'side_of_successes': sides_succ,
        'side_of_all': sides_all,
        'side_fraction_of_successes': {s: (v / len(succ) if succ else float('nan'))
                                       for s, v in sides_succ.items()},
        'command_jerk_rms_rad_s3': _mean(r['jerk_rms_rad_s3'] for r in rs),
        'command_jerk_max_rad_s3': max((r['jerk_max_rad_s3'] for r in rs
                                        if np.isfinite(r['jerk_max_rad_s3'])), default=float('nan')),
        'command_gaps': sum(int(r.get('command_gaps', 0)) for r in rs),
        'follower_jerk_max_rad_s3': max((r['follower_jerk_max_rad_s3'] for r in rs
                                         if np.isfinite(r['follower_jerk_max_rad_s3'])),
                                        default=float('nan')),
        'follower_jerk_rms_rad_s3': _rms_by_terms(rs),
        'follower_boundary_step_max_rad': max(
            (r.get('follower_boundary_step_max_rad', float('nan')) for r in rs
             if np.isfinite(r.get('follower_boundary_step_max_rad', float('nan')))),
            default=float('nan')),
        'follower_boundary_step_p50_rad': _median(r.get('follower_boundary_step_max_rad')
                                                  for r in rs),
        'chunks': sum(r['chunks'] for r in rs),
        'latency': metrics.latency_stats(lat),
        'min_distance_m': _mean(r['min_distance_m'] for r in rs),
        'min_clearance_m': _clearance_stats([r.get('min_clearance_m', float('nan')) for r in rs]),
        'boundary_step_max_rad': max((r.get('boundary_step_max_rad', float('nan')) for r in rs
                                      if np.isfinite(r.get('boundary_step_max_rad', float('nan')))),
                                     default=float('nan')),
        'boundary_step_mean_rad': _mean(r.get('boundary_step_mean_rad') for r in rs),
    }
