"""Evaluation metrics on arrays (ROS-free, numpy only).

What it is: the numbers dp_eval reports, as plain functions with known answers:
- `horizon_errors`: RMSE / MAE of predicted chunks against the demonstrated commands, per joint and
  per horizon step (masked where the demonstration ends before the horizon does).
- `ModeModel`, `mode_divergence`: mode coverage. Demonstrated future trajectories are clustered
  (k-means on the horizon's displacement from its first point, flattened; or a user-given function
  trajectory -> label, e.g. "side of the obstacle"), predicted trajectories (every sample) are
  assigned to the same modes, and the two mode histograms are compared by KL and Jensen-Shannon
  divergence (base 2: JS is 0 for identical histograms and 1 for disjoint ones).
- `jerk_stats`: third finite difference of position over time (rad/s^3), predicted vs demonstrated.
- `latency_stats`: mean and percentiles.

What it is not: anything that reads bags or runs a policy (dp_eval.offline, dp_eval.live and
dp_policy.training.holdout do, and call these).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ['horizon_errors', 'kmeans', 'ModeModel', 'histogram', 'kl_divergence',
           'js_divergence', 'mode_divergence', 'jerk', 'jerk_stats', 'latency_stats']


def horizon_errors(pred: np.ndarray, truth: np.ndarray, mask: Optional[np.ndarray] = None,
                   joint_names: Optional[Sequence[str]] = None) -> dict:
    """pred, truth: (N, H, A); mask: (N, H) bool, True where the truth exists.

    Returns rmse/mae overall, per joint (dict by name) and per horizon step (list of H, NaN where
    no step has a truth), and the number of compared points per step.
    """
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f'pred {pred.shape} and truth {truth.shape} must both be (N, H, A)')
    N, H, A = pred.shape
    m = np.ones((N, H), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (N, H):
        raise ValueError(f'mask {m.shape} must be (N, H) = {(N, H)}')
    names = list(joint_names) if joint_names is not None else [f'j{i}' for i in range(A)]
    err = np.where(m[..., None], pred - truth, 0.0)          # (N, H, A)
    n_step = m.sum(axis=0)                                    # (H,)
    n_all = int(m.sum())
    with np.errstate(invalid='ignore', divide='ignore'):
        sq_step = (err ** 2).sum(axis=(0, 2)) / (n_step * A)  # (H,)
        ab_step = np.abs(err).sum(axis=(0, 2)) / (n_step * A)
        sq_joint = (err ** 2).sum(axis=(0, 1)) / n_all        # (A,)
        ab_joint = np.abs(err).sum(axis=(0, 1)) / n_all
    rmse = float(np.sqrt((err ** 2).sum() / (n_all * A))) if n_all else float('nan')
    mae = float(np.abs(err).sum() / (n_all * A)) if n_all else float('nan')
    return {
        'rmse': rmse,
        'mae': mae,
        'rmse_per_joint': {n: float(v) for n, v in zip(names, np.sqrt(sq_joint))},
        'mae_per_joint': {n: float(v) for n, v in zip(names, ab_joint)},
        'rmse_per_step': [float(v) for v in np.sqrt(sq_step)],
        'mae_per_step': [float(v) for v in ab_step],
        'count_per_step': [int(v) for v in n_step],
        'chunks': int(N),
    }


def kmeans(X: np.ndarray, k: int, seed: int = 0, iters: int = 100) -> np.ndarray:
    """Deterministic k-means (k-means++ init) -> centroids (k, D)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f'kmeans needs (N, D) data with N > 0, got {X.shape}')
    k = min(k, len(np.unique(X, axis=0)))
    rng = np.random.default_rng(seed)
    C = [X[rng.integers(len(X))]]
    for _ in range(1, k):
        d2 = np.min(((X[:, None, :] - np.asarray(C)[None]) ** 2).sum(-1), axis=1)
        C.append(X[rng.choice(len(X), p=d2 / d2.sum())] if d2.sum() > 0 else X[rng.integers(len(X))])
    C = np.asarray(C)
    for _ in range(iters):
        lab = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
        newC = np.array([X[lab == j].mean(0) if np.any(lab == j) else C[j] for j in range(len(C))])
        if np.allclose(newC, C):
            break
        C = newC
    return C


def _features(traj: np.ndarray) -> np.ndarray:
    """(N, H, A) trajectories -> (N, H*A) displacement from each trajectory's first point."""
    traj = np.asarray(traj, dtype=np.float64)
    return (traj - traj[:, :1]).reshape(len(traj), -1)


@dataclass
class ModeModel:
    """Modes of demonstrated futures: k-means centroids, or a user function traj (H, A) -> label."""

    labels: list[str]
    centroids: Optional[np.ndarray] = None
    fn: Optional[Callable[[np.ndarray], str]] = None
    method: str = 'kmeans'

    @classmethod
    def fit(cls, demo: np.ndarray, k: int = 2, seed: int = 0) -> 'ModeModel':
        C = kmeans(_features(demo), k, seed=seed)
        # order modes by their mean displacement so that labels are stable across runs
        order = np.argsort(C.sum(axis=1))
        return cls(labels=[f'mode{i}' for i in range(len(C))], centroids=C[order],
                   method=f'kmeans(k={k}) on horizon displacement')

    @classmethod
    def from_function(cls, fn: Callable[[np.ndarray], str], labels: Sequence[str],
                      name: str = 'user function') -> 'ModeModel':
        return cls(labels=list(labels), fn=fn, method=name)

    def assign(self, traj: np.ndarray) -> np.ndarray:
        """(N, H, A) -> (N,) int indices into labels."""
        traj = np.asarray(traj)
        if len(traj) == 0:
            return np.zeros((0,), dtype=int)
        if self.fn is not None:
            out = []
            for tr in traj:
                lab = str(self.fn(tr))
                if lab not in self.labels:
                    self.labels.append(lab)
                out.append(self.labels.index(lab))
            return np.asarray(out, dtype=int)
        F = _features(traj)
        return np.argmin(((F[:, None, :] - self.centroids[None]) ** 2).sum(-1), axis=1)


def histogram(labels: np.ndarray, k: int) -> np.ndarray:
    h = np.bincount(np.asarray(labels, dtype=int), minlength=k).astype(np.float64)
    return h / h.sum() if h.sum() > 0 else h


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-6) -> float:
    """KL(p || q) in bits, with q smoothed by eps so that a missed mode gives a large finite value."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64) + eps
    q = q / q.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / q[nz])))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 identical, 1 disjoint)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def mode_divergence(demo: np.ndarray, pred_samples: np.ndarray, model: Optional[ModeModel] = None,
                    k: int = 2, chosen: Optional[np.ndarray] = None, seed: int = 0) -> dict:
    """Mode coverage of predictions against demonstrations.

    demo: (N, H, A) demonstrated futures (one per evaluated step); pred_samples: (N, K, H, A)
    predicted samples per step; chosen: (N, H, A) the chunk the policy would execute (for the
    per-step agreement), default sample 0.
    """
    demo = np.asarray(demo)
    pred_samples = np.asarray(pred_samples)
    if model is None:
        model = ModeModel.fit(demo, k=k, seed=seed)
    N, K = pred_samples.shape[:2]
    demo_lab = model.assign(demo)
    pred_lab = model.assign(pred_samples.reshape((N * K,) + pred_samples.shape[2:]))
    chosen_arr = pred_samples[:, 0] if chosen is None else np.asarray(chosen)
    chosen_lab = model.assign(chosen_arr)
    n_modes = len(model.labels)
    p_demo = histogram(demo_lab, n_modes)
    p_pred = histogram(pred_lab, n_modes)
    return {
        'method': model.method,
        'modes': list(model.labels),
        'demo_hist': [float(v) for v in p_demo],
        'pred_hist': [float(v) for v in p_pred],
        'kl_demo_pred_bits': kl_divergence(p_demo, p_pred),
        'js_bits': js_divergence(p_demo, p_pred),
        'agreement': float(np.mean(chosen_lab == demo_lab)) if N else float('nan'),
        'modes_covered': int(np.sum((p_pred > 0) & (p_demo > 0))),
        'modes_demonstrated': int(np.sum(p_demo > 0)),
        'samples_per_step': int(K),
    }


def jerk(traj: np.ndarray, dt: float) -> np.ndarray:
    """(..., T, A) positions -> (..., T-3, A) jerk (rad/s^3) by third finite differences."""
    traj = np.asarray(traj, dtype=np.float64)
    if traj.shape[-2] < 4:
        return np.zeros(traj.shape[:-2] + (0, traj.shape[-1]))
    return np.diff(traj, n=3, axis=-2) / dt ** 3


def jerk_stats(pred: np.ndarray, demo: np.ndarray, dt: float, mask: Optional[np.ndarray] = None,
               joint_names: Optional[Sequence[str]] = None) -> dict:
    """RMS and max |jerk| of predicted chunks vs demonstrated futures, over fully valid windows.

    pred, demo: (N, H, A); mask (N, H): a jerk sample counts where all its 4 points are valid.
    """
    pred = np.asarray(pred, dtype=np.float64)
    demo = np.asarray(demo, dtype=np.float64)
    N, H, A = pred.shape
    names = list(joint_names) if joint_names is not None else [f'j{i}' for i in range(A)]
    m = np.ones((N, H), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if H < 4:
        return {'pred_rms': float('nan'), 'demo_rms': float('nan'), 'ratio': float('nan'),
                'note': f'horizon {H} < 4: no jerk'}
    valid = m[:, :-3] & m[:, 1:-2] & m[:, 2:-1] & m[:, 3:]      # (N, H-3)
    jp, jd = jerk(pred, dt), jerk(demo, dt)                      # (N, H-3, A)
    if not valid.any():
        return {'pred_rms': float('nan'), 'demo_rms': float('nan'), 'ratio': float('nan')}
    vp, vd = jp[valid], jd[valid]                                # (M, A)
    pred_rms = float(np.sqrt(np.mean(vp ** 2)))
    demo_rms = float(np.sqrt(np.mean(vd ** 2)))
    return {
        'pred_rms': pred_rms,
        'demo_rms': demo_rms,
        'ratio': pred_rms / demo_rms if demo_rms > 0 else float('inf') if pred_rms > 0 else 1.0,
        'pred_max_abs': float(np.max(np.abs(vp))),
        'demo_max_abs': float(np.max(np.abs(vd))),
        'pred_rms_per_joint': {n: float(v) for n, v in zip(names, np.sqrt(np.mean(vp ** 2, 0)))},
        'demo_rms_per_joint': {n: float(v) for n, v in zip(names, np.sqrt(np.mean(vd ** 2, 0)))},
        'unit': 'rad/s^3',
    }


def latency_stats(latencies_s: Sequence[float]) -> dict:
    x = np.asarray([v for v in latencies_s if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return {'n': 0, 'mean_s': float('nan'), 'p50_s': float('nan'), 'p90_s': float('nan'),
                'p99_s': float('nan'), 'max_s': float('nan')}
    return {'n': int(len(x)), 'mean_s': float(x.mean()), 'p50_s': float(np.percentile(x, 50)),
            'p90_s': float(np.percentile(x, 90)), 'p99_s': float(np.percentile(x, 99)),
            'max_s': float(x.max())}


def worst_and_median(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, dt_s: float,
                     where: Sequence = (), samples: Optional[np.ndarray] = None,
                     max_samples: int = 8) -> dict:
    """The worst and the median chunk by RMSE over its known horizon (pred, truth (N, H, A),
    mask (N, H)): {'worst'|'median': episode, t (s into it, from `where`: (episode, t) per
    chunk), rmse, dt_s, mask, pred, truth, samples (up to max_samples of (N, K, H, A))} for the
    report's per-joint plot; {} when no chunk has a known step."""
    err = np.sqrt(np.array([np.mean((p[m] - t[m]) ** 2) if m.any() else np.nan
                            for p, t, m in zip(pred, truth, mask)]))
    ok = np.nonzero(np.isfinite(err))[0]
    if not len(ok):
        return {}
    order = ok[np.argsort(err[ok])]
    out = {}
    for name, i in (('worst', order[-1]), ('median', order[len(order) // 2])):
        episode, t = where[i] if i < len(where) else ('', float('nan'))
        out[name] = {'episode': episode, 't': t, 'rmse': float(err[i]), 'dt_s': float(dt_s),
                     'mask': mask[i].tolist(), 'pred': pred[i].tolist(),
                     'truth': truth[i].tolist(),
                     'samples': [] if samples is None else samples[i][:max_samples].tolist()}
    return out
