"""Offline replay: a checkpoint against recorded demonstrations, as fast as the machine allows.

What it is (ROS-free): for every step of every episode of the given bags, the observation window
of that time goes into the policy and the predicted chunk is compared with what the demonstrator
actually commanded at the chunk's times. Episodes come from `dp_policy.data.dataset.load_episodes`
(the project's one bag decoder: header-stamp alignment on the policy's dt grid), so the policy sees
exactly what training saw.

At grid step k (k >= n_obs_steps - 1) of an episode (t, state, action, images):
    obs window   state[k-n_obs+1 : k+1], images likewise, stamp t[k]
    prediction   out.actions[0, i] is for t[k] + (i - f) * dt, f = out.first_action_index
    ground truth action[k - f + i]   (masked where k - f + i is outside the episode)

Metrics (metrics.py): error per joint and per horizon step, mode coverage (predicted samples vs
demonstrated futures, as KL/JS divergence of mode histograms), jerk of predicted vs demonstrated
chunks, inference latency (a batch-1 probe on real observations, plus batched throughput).

Bad input: a missing topic raises bagio.MissingTopicError (naming it, listing those present); a
checkpoint whose joints or cameras do not match the bag raises CheckpointMismatchError (naming the
mismatch); a truncated or corrupt bag is recorded as an error, the bags evaluated before it are
kept, the part of it that can still be read (bagio.salvage: the messages before the damage) is
evaluated too, and the result is marked partial (as is a run stopped with Ctrl-C).

What it is not: live replay through ROS nodes (live.py) or closed loop (closed_loop.py).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from dp_common import metrics
from dp_eval import bagio

__all__ = ['CheckpointMismatchError', 'OfflineConfig', 'StepRecord', 'dataset_config_for',
           'default_camera_topics',
           'check_compatibility', 'replay_episodes', 'summarize', 'run_offline']


class CheckpointMismatchError(ValueError):
    """The checkpoint's joints or cameras do not match the bag."""


@dataclass
class OfflineConfig:
    batch_size: int = 16              # observation windows per predict() call
    latency_probe: int = 20           # extra batch-1 calls (real observations) for the latency
    modes: int = 2                    # k-means modes of the demonstrated futures
    mode_fn: Optional[Callable[[np.ndarray], str]] = None   # or a user function traj -> label
    mode_labels: Sequence[str] = ()   # labels the user function returns (for stable ordering)
    traces: int = 2                   # episodes whose predicted chunks go into the report plots
    max_steps: Optional[int] = None   # stop after this many evaluated steps (smoke runs)
    verify: bool = True               # read every bag's raw messages first (detects corruption)
    seed: int = 0
    backend: str = 'auto'             # DiffusionPolicy backend ('auto' measures at warm-up)
    num_samples: int = 8              # samples per observation (mode coverage needs several)
    warmup: bool = True               # measure backends first (off: plain torch, quicker start)
    salvage: bool = True              # evaluate the readable part of a truncated/corrupt bag


@dataclass
class StepRecord:
    """What one bag contributed (arrays stacked over its evaluated steps)."""

    pred: list = field(default_factory=list)        # (H, A) chosen chunks
    samples: list = field(default_factory=list)     # (K, H, A)
    truth: list = field(default_factory=list)       # (H, A)
    mask: list = field(default_factory=list)        # (H,)
    latency_s: list = field(default_factory=list)   # per call
    batch: list = field(default_factory=list)       # batch size per call
    where: list = field(default_factory=list)       # (episode name, seconds into it) per step


def default_camera_topics(meta: Any) -> dict[str, str]:
    """Camera name -> topic: the topics the checkpoint was trained on (dp_train stores its dataset
    config in the checkpoint), else /<name>/image_raw."""
    trained = ((getattr(meta, 'extra', None) or {}).get('dataset_config') or {}).get('cameras') or {}
    return {c: str(trained.get(c) or f'/{c}/image_raw') for c in meta.camera_names}


ACTION_KEYS = ('action_source', 'future_steps', 'leader_topic', 'leader_joint_names',
               'min_motion_rad')


def dataset_config_for(meta: Any, cameras: Optional[dict[str, str]] = None,
                       joint_states_topic: str = '/joint_states',
                       command_topic: str = '/forward_position_controller/commands',
                       command_joint_names: Sequence[str] = (), episode_topic: str = '',
                       base: Any = None, action: Optional[dict] = None):
    """DatasetConfig that decodes a bag into the checkpoint's joints, cameras, size and dt.

    `base`: a DatasetConfig (e.g. the training one from YAML) whose topics are kept; joints, dt and
    image size always come from the checkpoint. Cameras default to default_camera_topics(meta).
    Where the actions come from (ACTION_KEYS: action_source and its settings): `action` (the
    command line's), else what the checkpoint was trained with (its stored dataset config),
    else the commands.
    """
    from dp_policy.data.dataset import DatasetConfig
    if base is not None:
        d = base.to_dict()
        if cameras is None:
            cameras = dict(base.cameras)
    else:
        d = {'joint_states_topic': joint_states_topic, 'command_topic': command_topic,
             'command_joint_names': list(command_joint_names), 'episode_topic': episode_topic}
        trained = (getattr(meta, 'extra', None) or {}).get('dataset_config') or {}
        d.update({k: trained[k] for k in ACTION_KEYS if k in trained})
    d.update({k: v for k, v in (action or {}).items() if v is not None})
    if cameras is None:
        cameras = default_camera_topics(meta)
    d.update(joint_names=list(meta.joint_names), cameras=dict(cameras), dt_s=float(meta.dt_s),
             image_hw=tuple(meta.image_hw) if meta.image_hw else None)
    space = getattr(meta, 'action_space', None)
    if space is not None:     # load_episodes gives the checkpoint's end-effector poses
        d.update(action_space=space['kind'], urdf=space['urdf'], tip_link=space['tip_link'])
    mask = getattr(meta, 'robot_mask', None)
    if mask:                  # ... and paints the arm out of the images it was trained without
        d['robot_mask'] = {cam: spec for cam, spec in mask.items() if cam in d['cameras']}
        if not d.get('urdf'):
            d['urdf'] = ((getattr(meta, 'extra', None) or {}).get('dataset_config') or {}).get('urdf', '')
    return DatasetConfig.from_dict(d)


def _first(bag: str, topic: str):
    for raw in bagio.iter_raw(bag, [topic]):
        return bagio.deserialize(raw)
    return None


def _require_joints(bag, meta, msg_names, where: str, context: str) -> None:
    """CheckpointMismatchError unless every joint of the checkpoint is among msg_names;
    `context` may name {names} (the message's joints)."""
    names = [str(n) for n in msg_names]
    missing = [j for j in meta.joint_names if j not in names]
    if missing:
        raise CheckpointMismatchError(f'bag {bag}: joints {missing} of the checkpoint are not '
                                      f'{where} ({context.format(names=names)})')


def check_compatibility(bag: str | Path, meta: Any, cfg: Any) -> dict:
    """Raise MissingTopicError / CheckpointMismatchError before any work. Returns bag_info()."""
    bag = str(bag)
    info = bagio.bag_info(bag)
    present = {t: v['type'] for t, v in info['topics'].items()}
    ckpt_cams = list(meta.camera_names)
    cfg_cams = list(cfg.cameras)
    if sorted(ckpt_cams) != sorted(cfg_cams):
        raise CheckpointMismatchError(
            f'cameras: the checkpoint uses {ckpt_cams or "no camera"}, the evaluation is configured '
            f'with {cfg_cams or "no camera"} ({cfg.cameras})')
    image_topics = sorted(t for t, ty in present.items()
                          if ty in ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage'))
    for cam, topic in cfg.cameras.items():
        if topic not in present:
            raise CheckpointMismatchError(
                f'bag {bag}: checkpoint camera {cam!r} expects topic {topic!r}, which is not in the '
                f'bag; image topics present: {image_topics or "none"} (map cameras with '
                f'--camera NAME:=TOPIC)')
    action_topic = {'command': cfg.command_topic, 'leader': cfg.leader_topic}.get(cfg.action_source)
    bagio.require_topics(bag, [cfg.joint_states_topic] + ([action_topic] if action_topic else []))
    js = _first(bag, cfg.joint_states_topic)
    if js is not None:
        _require_joints(bag, meta, js.name, f'in {cfg.joint_states_topic}',
                        f'bag joints: {{names}}; checkpoint joints: {list(meta.joint_names)}')
    if cfg.action_source != 'command':
        return info          # the leader's joints: checked by name when the bag is decoded
    cmd = _first(bag, cfg.command_topic)
    if cmd is not None:
        if hasattr(cmd, 'data'):          # Float64MultiArray: order from command_joint_names
            want = len(cfg.command_joint_names or cfg.joint_names)
            if len(cmd.data) != want:
                raise CheckpointMismatchError(
                    f'bag {bag}: {cfg.command_topic} carries {len(cmd.data)} values per command, the '
                    f'checkpoint has {len(meta.joint_names)} joints {list(meta.joint_names)}'
                    + (f' (command_joint_names {cfg.command_joint_names})'
                       if cfg.command_joint_names else ''))
        elif hasattr(cmd, 'joint_names'):
            _require_joints(bag, meta, cmd.joint_names, f'commanded on {cfg.command_topic}',
                            'commanded: {names}')
    return info


def _windows(ep: Any, meta: Any, ks: Sequence[int]):
    n = meta.n_obs_steps
    state = np.stack([ep.state[k - n + 1:k + 1] for k in ks]).astype(np.float32)   # (B, n, S)
    images = {c: np.stack([ep.images[c][k - n + 1:k + 1] for k in ks]) for c in meta.camera_names}
    return state, images, ep.t[list(ks)]


def _truth(ep: Any, k: int, first: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(horizon) + k - first
    ok = (idx >= 0) & (idx < len(ep))
    truth = ep.action[np.clip(idx, 0, len(ep) - 1)].astype(np.float64)           # (H, A)
    return truth, ok


def replay_episodes(policy: Any, episodes: Sequence[Any], cfg: OfflineConfig, rec: StepRecord,
                    traces: list, bar: Any = None, budget: Optional[list] = None) -> None:
    """Run `policy` over every step of `episodes`, appending to rec (and traces)."""
    meta = policy.meta
    n = meta.n_obs_steps
    for ep in episodes:
        policy.reset()
        ks = list(range(n - 1, len(ep)))
        trace = None
        if len(traces) < cfg.traces:
            trace = {'episode': ep.name, 't': (ep.t - ep.t[0]).tolist(),
                     'recorded': ep.action.astype(float).tolist(), 'chunks': []}
            traces.append(trace)
        for start in range(0, len(ks), cfg.batch_size):
            batch = ks[start:start + cfg.batch_size]
            if budget is not None:
                if budget[0] <= 0:
                    return
                batch = batch[:budget[0]]
                budget[0] -= len(batch)
            state, images, stamps = _windows(ep, meta, batch)
            out = policy.predict(state, images, stamps=stamps, robot_ids=[ep.name] * len(batch))
            rec.latency_s.append(float(out.latency_s))
            rec.batch.append(len(batch))
            f = int(out.first_action_index)
            for b, k in enumerate(batch):
                truth, ok = _truth(ep, k, f, meta.horizon)
                rec.pred.append(np.asarray(out.actions[b], dtype=np.float64))
                rec.samples.append(np.asarray(out.samples[b], dtype=np.float64))
                rec.truth.append(truth)
                rec.mask.append(ok)
                rec.where.append((str(ep.name), float(ep.t[k] - ep.t[0])))
                if trace is not None and (k - (n - 1)) % max(1, meta.n_action_steps) == 0:
                    t_rel = ep.t[k] - ep.t[0] + (np.arange(meta.horizon) - f) * meta.dt_s
                    trace['chunks'].append({'t': t_rel.tolist(),
                                            'pred': np.asarray(out.actions[b]).tolist()})
            if bar is not None:
                bar.update(len(batch))


def latency_probe(policy: Any, episodes: Sequence[Any], count: int) -> list[float]:
    """`count` batch-1 predictions on real observations (what a node pays per chunk)."""
    meta = policy.meta
    out = []
    for ep in episodes:
        for k in range(meta.n_obs_steps - 1, len(ep)):
            if len(out) >= count:
                return out
            state, images, stamps = _windows(ep, meta, [k])
            out.append(float(policy.predict(state, images, stamps=stamps,
                                            robot_ids=['latency_probe']).latency_s))
    policy.reset()
    return out


def summarize(rec: StepRecord, meta: Any, cfg: OfflineConfig, probe: Sequence[float]) -> dict:
    """The metrics block of the JSON from the stacked records."""
    if not rec.pred:
        return {'steps': 0}
    pred = np.stack(rec.pred)            # (N, H, A)
    truth = np.stack(rec.truth)
    mask = np.stack(rec.mask)
    samples = np.stack(rec.samples)      # (N, K, H, A)
    names = column_names(meta)
    full = mask.all(axis=1)
    if cfg.mode_fn is not None:
        model = metrics.ModeModel.from_function(cfg.mode_fn, cfg.mode_labels, 'user function')
    else:
        model = metrics.ModeModel.fit(truth[full] if full.any() else truth, k=cfg.modes,
                                      seed=cfg.seed)
    sel = full if full.any() else np.ones(len(pred), bool)
    calls = np.asarray(rec.latency_s)
    sizes = np.asarray(rec.batch)
    lat = metrics.latency_stats(probe if len(probe) else calls[sizes == 1])
    lat['batch'] = 1
    lat['samples_s'] = [float(v) for v in (probe if len(probe) else calls[sizes == 1])]
    return {
        'steps': int(len(pred)),
        'error': metrics.horizon_errors(pred, truth, mask, names),
        'examples': metrics.worst_and_median(pred, truth, mask, float(meta.dt_s), rec.where,
                                             samples),
        'mode': metrics.mode_divergence(truth[sel], samples[sel], model=model,
                                        chosen=pred[sel], seed=cfg.seed),
        'jerk': metrics.jerk_stats(pred, truth, meta.dt_s, mask, names),
        'latency': lat,
        'throughput': {
            'batch_size': int(cfg.batch_size),
            'calls': int(len(calls)),
            'chunks_per_s': float(sizes.sum() / calls.sum()) if calls.sum() > 0 else float('nan'),
            'call_latency': metrics.latency_stats(calls),
        },
    }


def _meta_dict(meta: Any) -> dict:
    keys = ('joint_names', 'camera_names', 'image_hw', 'n_obs_steps', 'horizon', 'n_action_steps',
            'dt_s', 'fingerprint', 'train_steps')
    out = {}
    for k in keys:
        v = getattr(meta, k, None)
        out[k] = list(v) if isinstance(v, tuple) else v
    out['action_space'] = getattr(meta, 'space_kind', 'joint')
    out['columns'] = column_names(meta)
    return out


def column_names(meta: Any) -> list[str]:
    """Names of the action columns: the joints, or an end-effector space's pose columns
    (x, y, z in m, then the 6D rotation)."""
    space = getattr(meta, 'action_space', None)
    return list(meta.joint_names) if space is None else list(space['columns'])


def _evaluate_salvaged(bag: str, entry: dict, meta: Any, dataset_cfg: Any, evaluate) -> str:
    """Evaluate the readable part of a damaged bag (bagio.salvage into a temporary copy).
    Returns the text appended to the bag's error."""
    import tempfile

    from dp_policy.data.dataset import DatasetError
    with tempfile.TemporaryDirectory(prefix='dp_eval_salvaged_') as tmp:
        try:
            fixed, n = bagio.salvage(bag, Path(tmp) / 'salvaged')
            check_compatibility(fixed, meta, dataset_cfg)
            evaluate(str(fixed), None)
        except (bagio.BagError, DatasetError, CheckpointMismatchError) as exc:
            return f'; nothing of it could be evaluated ({exc})'
    entry['salvaged_messages'] = n
    return f'; evaluated the {n} messages read before the damage'


def run_offline(checkpoint: Any, bags: Sequence[str | Path], dataset_cfg: Any = None,
                cfg: OfflineConfig = OfflineConfig(), cache_dir: Optional[str] = None,
                progress: bool = True, policy_kwargs: Optional[dict] = None,
                label: Optional[str] = None) -> dict:
    """Evaluate a checkpoint (path, or a policy object with .meta/.predict/.reset) on bags.

    Returns the JSON-able result dict (kind 'offline'). Raises MissingTopicError or
    CheckpointMismatchError before evaluating anything; a corrupt bag does not raise: the result
    gets partial=True and the error text, with everything evaluated so far.
    """
    from dp_policy.data.dataset import DatasetError, find_bags
    t_start = time.monotonic()
    policy, ckpt_name = _open_policy(checkpoint, cfg, policy_kwargs)
    meta = policy.meta
    dataset_cfg = dataset_config_for(meta, base=dataset_cfg) if dataset_cfg is not None \
        else dataset_config_for(meta)
    try:
        bag_list = [str(b) for b in find_bags(bags)]
    except DatasetError as exc:
        raise bagio.BagError(str(exc)) from exc
    infos, unreadable = {}, {}
    for b in bag_list:
        try:
            infos[b] = check_compatibility(b, meta, dataset_cfg)
        except bagio.CorruptBagError as exc:     # reported with the results, not raised
            unreadable[b] = exc
            infos[b] = bagio.bag_info(b) if (Path(b) / 'metadata.yaml').is_file() else {
                'storage': 'unknown', 'duration_s': 0.0}
    if cfg.warmup and hasattr(policy, 'warmup'):
        policy.warmup(batch_sizes=sorted({1, cfg.batch_size}))
    result: dict = {
        'kind': 'offline', 'label': label or Path(ckpt_name).stem, 'checkpoint': ckpt_name,
        'policy': _meta_dict(meta), 'dataset': dataset_cfg.to_dict(), 'bags': [],
        'partial': False, 'errors': [],
    }
    run = _OfflineRun(policy, dataset_cfg, cfg, cache_dir)
    bar = None
    if progress:
        from dp_eval.progress import bar as make_bar
        total = sum(max(0, int(infos[b]['duration_s'] / meta.dt_s) + 1 - (meta.n_obs_steps - 1))
                    for b in bag_list)
        bar = make_bar(total, f'offline {label or Path(ckpt_name).stem}', 'step')
    run.bar = bar
    try:
        for b in bag_list:
            entry = {'path': b, 'storage': infos[b]['storage'], 'episodes': 0, 'steps': 0,
                     'error': None}
            result['bags'].append(entry)
            run.bag(b, entry, unreadable.get(b), result)
            if run.budget is not None and run.budget[0] <= 0:
                break
    except KeyboardInterrupt:
        result['partial'] = True
        result['errors'].append('interrupted (Ctrl-C): results so far are kept')
    finally:
        if bar is not None:
            bar.close()
    result['metrics'] = summarize(run.rec, meta, cfg, run.probe)
    result['traces'] = run.traces
    result['wall_s'] = time.monotonic() - t_start
    return result


def _open_policy(checkpoint: Any, cfg: OfflineConfig, policy_kwargs: Optional[dict]):
    """(policy, its name): a checkpoint path opened as a DiffusionPolicy, or the object given."""
    if isinstance(checkpoint, (str, Path)):
        from dp_policy.policy import DiffusionPolicy
        kw = {'num_samples': cfg.num_samples, 'seed': cfg.seed, 'backend': cfg.backend}
        kw.update(policy_kwargs or {})
        return DiffusionPolicy.from_checkpoint(str(checkpoint), **kw), str(checkpoint)
    return checkpoint, getattr(checkpoint, 'name', type(checkpoint).__name__)


class _OfflineRun:
    """The bags of one offline evaluation, one after the other, into one StepRecord."""

    def __init__(self, policy, dataset_cfg, cfg: OfflineConfig, cache_dir: Optional[str]):
        self.policy, self.dataset_cfg, self.cfg, self.cache_dir = policy, dataset_cfg, cfg, cache_dir
        self.rec = StepRecord()
        self.traces: list = []
        self.probe: list[float] = []
        self.budget = [cfg.max_steps] if cfg.max_steps is not None else None
        self.bar = None

    def evaluate(self, path: str, cache: Optional[str], entry: dict) -> None:
        from dp_policy.data.dataset import load_episodes
        eps, _ = load_episodes([path], self.dataset_cfg, cache_dir=cache, progress=False)
        if len(self.probe) < self.cfg.latency_probe:
            self.probe.extend(latency_probe(self.policy, eps,
                                            self.cfg.latency_probe - len(self.probe)))
        entry['episodes'] = len(eps)
        replay_episodes(self.policy, eps, self.cfg, self.rec, self.traces, self.bar, self.budget)

    def bag(self, b: str, entry: dict, unreadable: Optional[Exception], result: dict) -> None:
        """One bag into the record; a damaged one is said in entry/result (salvaged if asked)."""
        from dp_policy.data.dataset import DatasetError
        n_before = len(self.rec.pred)
        try:
            if unreadable is not None:
                raise unreadable
            if self.cfg.verify:
                for _ in bagio.iter_raw(b):
                    pass
            self.evaluate(b, self.cache_dir, entry)
        except (bagio.CorruptBagError, DatasetError) as exc:
            msg = str(exc)
            if isinstance(exc, bagio.CorruptBagError) and self.cfg.salvage:
                msg += _evaluate_salvaged(b, entry, self.policy.meta, self.dataset_cfg,
                                          lambda path, cache: self.evaluate(path, cache, entry))
            entry['error'] = msg
            result['errors'].append(msg)
            result['partial'] = True
            print(f'dp_eval offline: {msg}\n  (results so far are kept)', file=sys.stderr)
        entry['steps'] = len(self.rec.pred) - n_before
