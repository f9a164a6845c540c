"""Min-max normalisation of joint states and actions to [-1, 1] (ROS-free).

The statistics live outside the network and travel in the checkpoint as plain lists
(``{'min': [...], 'max': [...]}``). A dimension whose range is (nearly) zero - a joint that never
moved in the demonstrations, the height of a planar arm's end effector - maps to 0 with unit scale
(nothing is divided by zero) and comes back as that constant whatever the network says: the
policy never commands a value the demonstrations never had there (an end-effector policy of a
planar arm keeps its tip at the demonstrated height and its axis vertical). Works on numpy arrays and torch tensors (last axis = dimension).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

RANGE_EPS = 1e-4   # ranges below this (rad) count as constant


class MinMaxNormalizer:
    """x_norm = (x - center) * scale, scale = 2 / (max - min); constant dims: scale 1."""

    def __init__(self, min_: Any, max_: Any):
        lo = np.asarray(min_, dtype=np.float64).reshape(-1)
        hi = np.asarray(max_, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise ValueError(f'normalizer min {lo.shape} and max {hi.shape} differ in shape')
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError('normalizer statistics must be finite')
        if np.any(hi < lo):
            raise ValueError(f'normalizer max < min in dims {np.nonzero(hi < lo)[0].tolist()}')
        self.min = lo
        self.max = hi
        rng = hi - lo
        self.degenerate = rng < RANGE_EPS
        self.scale = np.where(self.degenerate, 1.0, 2.0 / np.where(self.degenerate, 1.0, rng))
        self.center = (hi + lo) / 2.0
        self._torch_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def fit(cls, data: Any) -> 'MinMaxNormalizer':
        """Statistics of (..., D) data over every leading axis."""
        arr = np.asarray(data, dtype=np.float64)
        arr = arr.reshape(-1, arr.shape[-1])
        if arr.shape[0] == 0:
            raise ValueError('cannot fit a normalizer on no data')
        return cls(arr.min(axis=0), arr.max(axis=0))

    @property
    def dim(self) -> int:
        return self.min.shape[0]

    def _params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.dtype)
        if key not in self._torch_cache:
            self._torch_cache[key] = (torch.as_tensor(self.center, dtype=x.dtype, device=x.device),
                                      torch.as_tensor(self.scale, dtype=x.dtype, device=x.device))
        return self._torch_cache[key]

    def _check(self, x: Any) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f'normalizer expects last dimension {self.dim}, got shape {tuple(x.shape)}')

    def normalize(self, x: Any) -> Any:
        self._check(x)
        if isinstance(x, torch.Tensor):
            center, scale = self._params(x)
            return (x - center) * scale
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return ((x - self.center) * self.scale).astype(dtype, copy=False)

    def unnormalize(self, x: Any) -> Any:
        """x / scale + center; the constant dimensions are their constant."""
        self._check(x)
        if isinstance(x, torch.Tensor):
            center, scale = self._params(x)
            out = x / scale + center
            if self.degenerate.any():
                keep = torch.as_tensor(self.degenerate, device=x.device)
                out = torch.where(keep, center.expand_as(out), out)
            return out
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        out = np.where(self.degenerate, self.center, x / self.scale + self.center)
        return out.astype(dtype, copy=False)

    def state_dict(self) -> dict[str, list[float]]:
        return {'min': self.min.tolist(), 'max': self.max.tolist()}

    @classmethod
    def from_state_dict(cls, d: dict) -> 'MinMaxNormalizer':
        if not isinstance(d, dict) or 'min' not in d or 'max' not in d:
            raise ValueError("normalizer stats must be a dict with 'min' and 'max'")
        return cls(d['min'], d['max'])
