"""Differentiable costs on a chunk of joint positions (torch, ROS-free): what guided sampling
descends and what score-and-select ranks.

Every cost takes the chunk q (N, T, J) in joint units (rad, after un-normalisation) and returns
(N,): one value per sample, 0 where the chunk is well inside every constraint. Constraint costs
are relaxed log barriers on a clearance d (how far inside the constraint, minus its margin):

    B(d) = -log(d / d0) + d / d0 - 1                          delta <= d < d0
         = B(delta) + B'(delta) (d - delta) + (d - delta)^2 / (2 delta^2)   d < delta
         = 0                                                  d >= d0

C1 at d0 (value and slope 0: the cost starts to push smoothly), C2 at delta (Hauser & Saccon's
relaxation: a finite value and a gradient that points back inside everywhere, also for samples
that start outside, where a plain log barrier is undefined). d0 is the distance from which a
constraint starts to push.

Constraints: joint position limits, velocity and acceleration along the chunk (finite differences
at the checkpoint's dt, the step from the first action to the chunk in execution included where it
is given), Cartesian clearance between the arm's collision spheres (kinematics.TorchKinematics)
and obstacles (spheres, capsules, boxes). Smoothness: mean squared jerk along the chunk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch


RATE_D0 = 0.2    # velocity and acceleration barriers push from 80 % of their (margined) limit


def relaxed_log_barrier(d: torch.Tensor, d0: float, delta: float) -> torch.Tensor:
    """Elementwise barrier of a clearance d (see the module docstring); 0 for d >= d0."""
    delta = min(delta, 0.5 * d0)
    inside = -torch.log(torch.clamp(d, min=delta) / d0) + d / d0 - 1.0
    b_delta = -math.log(delta / d0) + delta / d0 - 1.0
    slope = -1.0 / delta + 1.0 / d0
    outside = b_delta + slope * (d - delta) + 0.5 * ((d - delta) / delta) ** 2
    return torch.where(d >= d0, torch.zeros_like(d), torch.where(d >= delta, inside, outside))


# ------------------------------------------------------------------------------ obstacles
@dataclass
class Obstacle:
    """kind 'sphere' (centre, radius), 'capsule' (a, b, radius), 'cylinder' (upright: centre,
    radius, half height size[2]) or 'box' (centre, half sizes `size`, rotation `rpy` fixed-axis
    roll/pitch/yaw); metres, in the robot's root frame."""
    kind: str
    centre: Sequence[float] = (0.0, 0.0, 0.0)
    radius: float = 0.0
    a: Sequence[float] = (0.0, 0.0, 0.0)
    b: Sequence[float] = (0.0, 0.0, 0.0)
    size: Sequence[float] = (0.0, 0.0, 0.0)
    rpy: Sequence[float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.kind not in ('sphere', 'capsule', 'cylinder', 'box'):
            raise ValueError("obstacle kind must be 'sphere', 'capsule', 'cylinder' or 'box', got "
                             f'{self.kind!r}')
        if self.radius < 0 or min(self.size) < 0:
            raise ValueError('obstacle radius and sizes must be >= 0')

    def distance(self, p: torch.Tensor) -> torch.Tensor:
        """Signed distance (m) from points p (..., 3) to the obstacle's surface (< 0 inside)."""
        t = dict(dtype=p.dtype, device=p.device)
        if self.kind == 'sphere':
            return _norm(p - torch.tensor(self.centre, **t)) - self.radius
        if self.kind == 'capsule':
            a, b = torch.tensor(self.a, **t), torch.tensor(self.b, **t)
            ab = b - a
            s = torch.clamp(((p - a) @ ab) / torch.clamp(ab @ ab, min=1e-12), 0.0, 1.0)
            return _norm(p - (a + s[..., None] * ab)) - self.radius
        if self.kind == 'cylinder':
            d = p - torch.tensor(self.centre, **t)
            q = torch.stack([_norm(d[..., :2]) - self.radius, d[..., 2].abs() - self.size[2]], -1)
            return _norm(torch.clamp(q, min=0.0)) + torch.clamp(q.max(dim=-1).values, max=0.0)
        R = torch.tensor(_rpy_matrix(self.rpy), **t)
        local = (p - torch.tensor(self.centre, **t)) @ R               # R^T (p - c), row vectors
        q = local.abs() - torch.tensor(self.size, **t)
        outside = _norm(torch.clamp(q, min=0.0))
        inside = torch.clamp(q.max(dim=-1).values, max=0.0)
        return outside + inside


def _norm(v: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((v * v).sum(-1) + 1e-18)     # differentiable at 0 (1e-9 m off there)


def _rpy_matrix(rpy: Sequence[float]):
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = (math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y),
                              math.sin(y))
    return [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr]]


# ------------------------------------------------------------------------------ costs
@dataclass
class CostWeights:
    """Weights (0: off) and margins of the costs."""
    limits: float = 1.0
    limit_margin_rad: float = 0.02         # kept free inside each joint limit
    limit_d0_rad: float = 0.05             # the limit barrier pushes from this far inside
    velocity: float = 1.0
    velocity_margin: float = 0.05          # fraction of the velocity limit kept free
    acceleration: float = 0.0              # off: the follower limits accelerations anyway
    acceleration_margin: float = 0.05      # fraction of the acceleration limit kept free
    obstacles: float = 1.0
    obstacle_margin_m: float = 0.01        # clearance kept to every obstacle (hard: the gate)
    obstacle_d0_m: float = 0.03            # the obstacle barrier pushes from this far
    jerk: float = 0.0                      # mean squared jerk ((rad/s^3)^2), off by default
    barrier_delta: float = 0.2             # relaxation point of every barrier, fraction of d0


@dataclass
class ChunkConstraints:
    """What a chunk must respect: limits (J,), the checkpoint's dt, obstacles, the kinematics."""
    lower: torch.Tensor
    upper: torch.Tensor
    dt_s: float
    vmax: Optional[torch.Tensor] = None
    amax: Optional[torch.Tensor] = None
    kinematics: Optional[object] = None          # kinematics.TorchKinematics
    obstacles: list = field(default_factory=list)


def cost_terms(q: torch.Tensor, c: ChunkConstraints, w: CostWeights,
               q_prev: Optional[torch.Tensor] = None,
               clear: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Each weighted cost of the chunks q (N, T, J): {name: (N,)}. q_prev (N, J): the command
    the chunk continues from (its velocity and acceleration count from there). clear:
    clearance(q, c) where the caller has it (no gradient through it then)."""
    out = {}
    lower, upper = c.lower.to(q), c.upper.to(q)
    if w.limits > 0:
        d = torch.minimum(q - lower, upper - q) - w.limit_margin_rad              # (N, T, J)
        out['limits'] = w.limits * _barrier(d, w.limit_d0_rad, w).sum((-1, -2))
    seq = q if q_prev is None else torch.cat([q_prev[:, None], q], dim=1)
    v = torch.diff(seq, dim=1) / c.dt_s                                            # (N, T', J)
    if w.velocity > 0 and c.vmax is not None:
        vmax = c.vmax.to(q)
        d = (vmax * (1 - w.velocity_margin) - v.abs()) / vmax                      # fraction
        out['velocity'] = w.velocity * _barrier(d, RATE_D0, w).sum((-1, -2))
    if w.acceleration > 0 and c.amax is not None and v.shape[1] > 1:
        amax = c.amax.to(q)
        a = torch.diff(v, dim=1) / c.dt_s
        d = (amax * (1 - w.acceleration_margin) - a.abs()) / amax
        out['acceleration'] = w.acceleration * _barrier(d, RATE_D0, w).sum((-1, -2))
    if w.obstacles > 0 and c.kinematics is not None and c.obstacles:
        d = clearance(q, c) if clear is None else clear
        out['obstacles'] = w.obstacles * _barrier(d - w.obstacle_margin_m,
                                                  w.obstacle_d0_m, w).sum(-1)
    if w.jerk > 0 and v.shape[1] > 2:
        j = torch.diff(v, n=2, dim=1) / c.dt_s ** 2
        out['jerk'] = w.jerk * (j ** 2).mean((-1, -2))
    return out


def clearance(q: torch.Tensor, c: ChunkConstraints) -> torch.Tensor:
    """Smallest signed distance (m) between the arm's collision spheres and any obstacle, at each
    action of the chunks q (N, T, J): (N, T); +inf without obstacles."""
    if c.kinematics is None or not c.obstacles:
        return torch.full(q.shape[:-1], math.inf, dtype=q.dtype)
    pts, radii = c.kinematics.collision_points(q)                                  # (N, T, P, 3)
    d = torch.stack([o.distance(pts) for o in c.obstacles], dim=-1)                # (N, T, P, O)
    return (d - radii[:, None]).amin(dim=(-1, -2))


def _barrier(d: torch.Tensor, d0: float, w: CostWeights) -> torch.Tensor:
    return relaxed_log_barrier(d, d0, w.barrier_delta * d0)


def total_cost(q: torch.Tensor, c: ChunkConstraints, w: CostWeights,
               q_prev: Optional[torch.Tensor] = None,
               clear: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sum of cost_terms: (N,)."""
    terms = cost_terms(q, c, w, q_prev, clear)
    if not terms:
        return torch.zeros(q.shape[0], dtype=q.dtype)
    return torch.stack(list(terms.values())).sum(0)


def hard_violations(q: torch.Tensor, c: ChunkConstraints, obstacle_margin_m: float = 0.0,
                    q_prev: Optional[torch.Tensor] = None,
                    clear: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N,) bool: a chunk outside the position limits, above the velocity limit, or closer to an
    obstacle than obstacle_margin_m. What the safety gate refuses. `clear`: clearance(q, c) where
    the caller has it already (the FK is the expensive part)."""
    lower, upper = c.lower.to(q), c.upper.to(q)
    bad = ~((q >= lower) & (q <= upper)).flatten(1).all(1)             # NaN is outside too
    if c.vmax is not None:
        seq = q if q_prev is None else torch.cat([q_prev[:, None], q], dim=1)
        v = torch.diff(seq, dim=1) / c.dt_s
        bad |= ~(v.abs() <= c.vmax.to(q) * (1 + 1e-9)).flatten(1).all(1)
    if c.kinematics is not None and c.obstacles:
        bad |= ~((clearance(q, c) if clear is None else clear) >= obstacle_margin_m).all(1)
    return bad
