"""Scripted demonstrator for the post-avoidance reach task (ROS-free).

Plans a smooth path of the stylus tip from where it is to the target, around the post on the left
(+y) or the right (-y) with probability 1/2 each, and turns it into joint position commands:

- Geometry: a cubic spline through via points beside the post (start -> two points alongside the
  post at a lateral offset -> target), parameterised by chord length.
- Timing: minimum-jerk time scaling s(t) = 10 tau^3 - 15 tau^4 + 6 tau^5 along the whole path
  (zero velocity and acceleration at both ends: the bell-shaped speed profile of a human reach),
  after a short reaction delay. Delay, duration and lateral offset are randomised a little per
  episode so that no two demonstrations are identical.
- Joints: analytic IK of the planar 3R arm (env.planar_ik: last link radial, elbow on the same
  side for the whole path, so the joint path is as smooth as the tip path).

What it is not: a policy (it uses the privileged target position that the task status carries)
or a ROS node (demonstrator_node wraps it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.interpolate import CubicSpline

from .env import planar_fk, planar_ik

LINK_LENGTHS_M = (0.20, 0.16, 0.10)


@dataclass
class ExpertConfig:
    """Randomisation ranges (uniform) of the scripted demonstrator."""

    reaction_delay_s: tuple[float, float] = (0.2, 0.5)
    duration_s: tuple[float, float] = (3.0, 3.8)
    lateral_offset_m: tuple[float, float] = (0.075, 0.095)  # via points' |y - post_y|
    via_half_spacing_m: tuple[float, float] = (0.045, 0.06)  # via points at post_x -/+ this
    p_left: float = 0.5
    post_xy_m: tuple[float, float] = (0.31, 0.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_left <= 1.0:
            raise ValueError('p_left must be in [0, 1]')
        for name in ('reaction_delay_s', 'duration_s', 'lateral_offset_m', 'via_half_spacing_m'):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f'{name}: need 0 <= lower <= upper')


def min_jerk(tau: np.ndarray) -> np.ndarray:
    """Minimum-jerk phase s(tau) for tau in [0, 1] (clipped outside)."""
    tau = np.clip(tau, 0.0, 1.0)
    return tau ** 3 * (10 - 15 * tau + 6 * tau ** 2)


class ExpertPlan:
    """One planned demonstration: joint command as a function of time since the plan started."""

    def __init__(self, side: str, tip_path: CubicSpline, delay_s: float, duration_s: float,
                 q_start: np.ndarray, elbow_sign: float) -> None:
        self.side = side
        self.delay_s = delay_s
        self.duration_s = duration_s
        self._path = tip_path
        self._q_start = q_start
        self._elbow = elbow_sign
        self.q_goal = self.command_at(delay_s + duration_s)

    @property
    def end_s(self) -> float:
        return self.delay_s + self.duration_s

    def tip_at(self, t_s: float | np.ndarray) -> np.ndarray:
        s = min_jerk((np.asarray(t_s, dtype=np.float64) - self.delay_s) / self.duration_s)
        return self._path(s)

    def command_at(self, t_s: float) -> np.ndarray:
        """Joint position command (3,) at t_s seconds after the plan started."""
        if t_s <= self.delay_s:
            return self._q_start.copy()
        q = planar_ik(self.tip_at(t_s), LINK_LENGTHS_M, self._elbow)
        # Blend out of the (noisy) start pose within the first 30% of the motion so that the
        # command is continuous at the start even though the start pose is not exactly on the IK rule.
        w = float(min_jerk(np.asarray((t_s - self.delay_s) / (0.3 * self.duration_s))))
        q_ik0 = planar_ik(self._path(0.0), LINK_LENGTHS_M, self._elbow)
        return q + (1.0 - w) * (self._q_start - q_ik0)


class ScriptedExpert:
    """Plans ExpertPlans; owns its random generator (seed it for reproducible demonstrations)."""

    def __init__(self, config: Optional[ExpertConfig] = None, seed: Optional[int] = None) -> None:
        self.config = config or ExpertConfig()
        self.rng = np.random.default_rng(seed)

    def plan(self, q_start: np.ndarray, target_xy: np.ndarray, side: Optional[str] = None,
             ) -> ExpertPlan:
        cfg = self.config
        rng = self.rng
        if side is None:
            side = 'left' if rng.random() < cfg.p_left else 'right'
        if side not in ('left', 'right'):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        sgn = 1.0 if side == 'left' else -1.0
        q_start = np.asarray(q_start, dtype=np.float64).reshape(3)
        px, py = cfg.post_xy_m
        lat = rng.uniform(*cfg.lateral_offset_m)
        half = rng.uniform(*cfg.via_half_spacing_m)
        p0 = planar_fk(q_start, LINK_LENGTHS_M)
        tgt = np.asarray(target_xy, dtype=np.float64).reshape(-1)[:2]
        pts = np.array([p0,
                        [px - half, py + sgn * lat],
                        [px + half, py + sgn * (lat + rng.uniform(-0.01, 0.01))],
                        tgt])
        chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        u = chord / chord[-1]
        path = CubicSpline(u, pts, bc_type='natural')
        elbow = 1.0 if q_start[1] >= 0 else -1.0
        return ExpertPlan(side, path, rng.uniform(*cfg.reaction_delay_s),
                          rng.uniform(*cfg.duration_s), q_start, elbow)


def balanced_sides(rng: np.random.Generator):
    """Endless sides, 'left' and 'right' in random order within each consecutive pair.

    Each episode is left or right with probability 1/2, and any even number of episodes is split
    exactly in half (a demonstration set is balanced whatever the seed).
    """
    while True:
        pair = ['left', 'right']
        if rng.random() < 0.5:
            pair.reverse()
        yield from pair


def path_clearance_m(plan: ExpertPlan, post_xy: tuple[float, float], n: int = 400) -> float:
    """Smallest distance from the planned tip path to the post axis (for checks and tests)."""
    t = np.linspace(plan.delay_s, plan.end_s, n)
    tips = plan.tip_at(t)
    return float(np.min(np.linalg.norm(tips - np.asarray(post_xy), axis=1)))
