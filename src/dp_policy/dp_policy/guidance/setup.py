"""Guidance for a robot from its URDF and a few settings (what policy_node's parameters give):
the kinematic chain, limits and collision geometry from the URDF, obstacles from short strings.

    cfg, constraints, dims = guidance_from_urdf('arm.urdf', 'tool0', policy_joints, dt_s,
                                                obstacles=['capsule 0.31 0 0 0.31 0 0.06 0.025'])
    policy.set_guidance(cfg, constraints, dims)

Obstacle strings (metres, the URDF's root frame): 'sphere x y z r', 'capsule ax ay az bx by bz r',
'cylinder x y z r h' (upright, centre, radius, half height), 'box cx cy cz hx hy hz [roll pitch
yaw]' (h: half sizes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from dp_policy.guidance.costs import ChunkConstraints, CostWeights, Obstacle
from dp_policy.guidance.guide import GuidanceConfig
from dp_policy.guidance.kinematics import TorchKinematics

ARITY = {'sphere': (4,), 'capsule': (7,), 'cylinder': (5,), 'box': (6, 9)}


def parse_obstacle(text: str) -> Obstacle:
    """One obstacle string (see the module docstring); ValueError says what is wrong."""
    parts = text.split()
    if not parts or parts[0] not in ARITY:
        raise ValueError(f"obstacle {text!r}: starts with one of {sorted(ARITY)}")
    kind = parts[0]
    try:
        v = [float(x) for x in parts[1:]]
    except ValueError:
        raise ValueError(f'obstacle {text!r}: numbers expected after {kind!r}') from None
    if len(v) not in ARITY[kind]:
        raise ValueError(f'obstacle {text!r}: {kind} takes {" or ".join(map(str, ARITY[kind]))} '
                         'numbers')
    if kind == 'sphere':
        return Obstacle('sphere', centre=v[:3], radius=v[3])
    if kind == 'capsule':
        return Obstacle('capsule', a=v[:3], b=v[3:6], radius=v[6])
    if kind == 'cylinder':
        return Obstacle('cylinder', centre=v[:3], radius=v[3], size=(v[3], v[3], v[4]))
    return Obstacle('box', centre=v[:3], size=v[3:6], rpy=v[6:9] if len(v) == 9 else (0, 0, 0))


def guidance_from_urdf(urdf: Union[str, Path], tip: str, joint_names: Sequence[str], dt_s: float,
                       obstacles: Sequence[str] = (), limit_margin_rad: float = 0.02,
                       obstacle_margin_m: float = 0.01, config: GuidanceConfig | None = None,
                       obstacles_expected: bool = False):
    """(GuidanceConfig, ChunkConstraints, joint_dims) for a policy whose actions are the positions
    of `joint_names`: every joint of the URDF's chain to `tip` must be one of them (joint_dims:
    where). Limits and velocity limits from the URDF. obstacles_expected: obstacles will come
    later (a topic): the URDF must bound every moving link as for `obstacles`."""
    fk = TorchKinematics.from_urdf(urdf, tip=tip)
    if (obstacles or obstacles_expected) and not len(fk.sphere_radii):
        raise ValueError(f'no <collision> geometry on the moving links of the chain to {tip!r}: '
                         'obstacles cannot be kept away from the arm')
    if (obstacles or obstacles_expected) and fk.unbounded_links:
        raise ValueError(f'links {fk.unbounded_links} have mesh collision geometry, which guidance '
                         'does not bound: obstacles need primitive <collision> elements (cylinder, '
                         'box, sphere, capsule) on every moving link of the URDF')
    names = list(joint_names)
    missing = [n for n in fk.joint_names if n not in names]
    if missing:
        raise ValueError(f"the URDF chain to {tip!r} has joints {missing} that are not the "
                         f"policy's {names}")
    chain = fk.chain
    if not (np.all(np.isfinite(chain.lower)) and np.all(np.isfinite(chain.upper))):
        raise ValueError(f'the URDF gives no position limits for some of {fk.joint_names}')
    vmax = torch.tensor(chain.velocity) if np.all(np.isfinite(chain.velocity)) else None
    constraints = ChunkConstraints(lower=torch.tensor(chain.lower), upper=torch.tensor(chain.upper),
                                   dt_s=float(dt_s), vmax=vmax, kinematics=fk,
                                   obstacles=[parse_obstacle(o) for o in obstacles])
    config = config or GuidanceConfig()
    config.weights = CostWeights(**{**config.weights.__dict__, 'limit_margin_rad': limit_margin_rad,
                                    'obstacle_margin_m': obstacle_margin_m})
    return config, constraints, [names.index(n) for n in fk.joint_names]
