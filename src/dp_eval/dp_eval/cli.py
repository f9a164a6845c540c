"""`dp_eval`: the command line of the evaluation package.

    dp_eval offline CKPT [CKPT2] --bags B... [--out DIR]      checkpoint(s) vs recorded bags
    dp_eval play BAG [--rate R] [--clock] ...                  = dp_bag_play (publish a bag)
    dp_eval live BAG --out DIR [--rate R] [--launch-file F] play a bag (with /clock), record the graph's
                                                               outputs into a new bag, compare
    dp_eval closed-loop [CKPT [CKPT2]] --episodes N --out DIR  N simulated episodes per checkpoint
    dp_eval report RESULT.json [RESULT2.json] --out DIR        (re)write the report from JSON

Every command that evaluates writes DIR/result.json (machines) and DIR/report.html +
DIR/report.md with PNG plots (people), and prints a short table. Exit codes: 0 done, 1 finished
with errors (partial results written), 2 bad input (nothing evaluated; the message says why).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

__all__ = ['main', 'build_parser']


def _camera_map(items: list[str]) -> Optional[dict[str, str]]:
    from dp_bringup.cli import parse_assignments
    return parse_assignments(items, '--camera values (NAME:=TOPIC)') if items else None


def _gaps(n: int) -> str:
    return f" (command stream cut at {n} reception gap{'s' if n != 1 else ''})" if n else ''


def _clearance(c) -> str:
    """'  min clearance 3.1 mm (p5 5.2 mm)' where the task reported it, else ''."""
    lo, p5 = (c or {}).get('min'), (c or {}).get('p5')
    if lo is None or p5 is None or not math.isfinite(lo):      # JSON stores nan as null
        return ''
    return f"  min clearance {lo * 1000:.1f} mm (p5 {p5 * 1000:.1f} mm)"


def _fmt(v, unit: str = '', digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return '-'
    if isinstance(v, float):
        return f'{v:.{digits}g}{unit}'
    return f'{v}{unit}'


def _ms(v) -> str:
    return _fmt(None if v is None else float(v) * 1e3, ' ms')


def _pct(v) -> str:
    return _fmt(None if v is None else float(v) * 100, '%')


def print_summary(results: list[dict], stream=None) -> None:
    """A short plain-text table of the headline numbers of each result."""
    stream = stream or sys.stdout
    for r in results:
        m = r.get('metrics', {})
        head = f"== {r.get('label', '?')} ({r['kind']})" + ('  [PARTIAL]' if r.get('partial') else '')
        print(head, file=stream)
        if r['kind'] == 'offline':
            if not m.get('steps'):
                print('  no step evaluated', file=stream)
            else:
                e, mo, j, lat = m['error'], m['mode'], m['jerk'], m['latency']
                print(f"  steps {m['steps']}  RMSE {_fmt(e['rmse'], ' rad')}  MAE "
                      f"{_fmt(e['mae'], ' rad')}  (step 0 {_fmt(e['rmse_per_step'][0])}, last "
                      f"{_fmt(e['rmse_per_step'][-1])})", file=stream)
                print(f"  modes demo {[round(x, 2) for x in mo['demo_hist']]} pred "
                      f"{[round(x, 2) for x in mo['pred_hist']]}  JS {_fmt(mo['js_bits'], ' bit')}"
                      f"  agreement {_fmt(mo['agreement'])}", file=stream)
                print(f"  jerk RMS pred {_fmt(j['pred_rms'])} / demo {_fmt(j['demo_rms'])} rad/s^3"
                      f"  latency p50 {_ms(lat['p50_s'])} p90 {_ms(lat['p90_s'])} (batch 1)",
                      file=stream)
        elif r['kind'] == 'closed_loop':
            tts, lat = m['time_to_success_s'], m['latency']
            side = m['side_of_successes']
            print(f"  success {m['successes']}/{m['episodes']} ({_pct(m['success_rate'])})"
                  f"  left/right {side['left']}/{side['right']}  time to target mean "
                  f"{_fmt(tts['mean'], ' s')}  obstacle contacts {m['obstacle_contacts']}"
                  f"{_clearance(m.get('min_clearance_m'))}", file=stream)
            print(f"  command jerk RMS {_fmt(m['command_jerk_rms_rad_s3'])} max "
                  f"{_fmt(m['command_jerk_max_rad_s3'])} rad/s^3  chunk boundary step max "
                  f"{_fmt(m.get('boundary_step_max_rad'), ' rad')}"
                  f"{_gaps(m.get('command_gaps', 0))}  policy latency p50 "
                  f"{_ms(lat['p50_s'])} p99 {_ms(lat['p99_s'])} "
                  f"({lat['n']} chunks)", file=stream)
            if m.get('follower_jerk_rms_rad_s3') is not None and \
                    math.isfinite(m['follower_jerk_rms_rad_s3']):    # null in JSON: NaN
                print(f"  at the follower (its command times): jerk RMS "
                      f"{_fmt(m['follower_jerk_rms_rad_s3'])} max "
                      f"{_fmt(m.get('follower_jerk_max_rad_s3'))} rad/s^3  boundary step max "
                      f"{_fmt(m.get('follower_boundary_step_max_rad'), ' rad')} (episode median "
                      f"{_fmt(m.get('follower_boundary_step_p50_rad'), ' rad')})", file=stream)
            if r.get('controller_rejections') is not None:
                print(f"  commands refused by the controller {r['controller_rejections']}  "
                      f"follower tracking faults {r.get('tracking_faults')}", file=stream)
        elif r['kind'] == 'live':
            c = m.get('comparison', {})
            print(f"  played {m.get('played', 0)} msgs, recorded {m.get('recorded', 0)}; "
                  f"chunks {c.get('chunks', 0)}  RMSE vs bag commands "
                  f"{_fmt(c.get('error', {}).get('rmse'), ' rad')}", file=stream)
        for e in r.get('errors', [])[:5]:
            print(f'  error: {e}', file=stream)


def _write(results: list[dict], out: str, title: str, ns=None) -> Path:
    from dp_eval.report import to_json, write_report
    visuals = []
    if any(r.get('kind') == 'closed_loop' and r.get('bag') for r in results):
        from dp_eval.rollouts import closed_loop_visuals
        # The numbers first: nothing that the figures or videos meet can lose them.
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / 'result.json').write_text(to_json(results))
        t0 = time.monotonic()
        visuals = closed_loop_visuals(
            results, out, fans=getattr(ns, 'fans', 3),
            video_successes=getattr(ns, 'video_successes', 2),
            max_videos=getattr(ns, 'videos', 6))
        print(f'dp_eval: paths, clearance, sampled futures and {sum(v["section"] == "Videos" for v in visuals)} '
              f'videos in {time.monotonic() - t0:.1f} s', file=sys.stderr)
    paths = write_report(results, out, title=title, visuals=visuals)
    print(f"dp_eval: wrote {paths['json']}, {paths['html']}, {paths['md']}", file=sys.stderr)
    return paths['html']


def cmd_offline(ns) -> int:
    from dp_eval import bagio
    from dp_eval.offline import CheckpointMismatchError, OfflineConfig, run_offline
    from dp_policy.checkpoint import CheckpointError
    from dp_policy.data.dataset import DatasetConfig
    try:
        base = None
        if ns.dataset_config:        # the config, and the keys the file itself sets
            import yaml
            with open(ns.dataset_config) as f:
                raw = yaml.safe_load(f) or {}
            raw = raw['dataset'] if isinstance(raw.get('dataset'), dict) else raw
            base = (DatasetConfig.from_yaml(ns.dataset_config), set(raw))
    except (OSError, ValueError) as exc:
        print(f'dp_eval offline: {exc}', file=sys.stderr)
        return 2
    cams = _camera_map(ns.camera)
    cfg = OfflineConfig(batch_size=ns.batch_size, latency_probe=ns.latency_probe,
                        modes=ns.modes, max_steps=ns.max_steps, backend=ns.backend,
                        num_samples=ns.num_samples, seed=ns.seed, warmup=not ns.no_warmup)
    results = []
    for i, ckpt in enumerate(ns.checkpoints):
        label = ns.labels[i] if ns.labels and i < len(ns.labels) else None
        try:
            ds = _offline_dataset_config(ns, ckpt, base, cams)
            results.append(run_offline(ckpt, ns.bags, dataset_cfg=ds, cfg=cfg,
                                       cache_dir=ns.cache_dir, progress=not ns.no_progress,
                                       label=label))
        except (bagio.BagError, CheckpointMismatchError, CheckpointError, ValueError) as exc:
            print(f'dp_eval offline: {exc}', file=sys.stderr)
            return 2
    print_summary(results)
    _write(results, ns.out, 'Offline replay')
    return 1 if any(r['partial'] for r in results) else 0


def cmd_closed_loop(ns) -> int:
    from dp_bringup.cli import parse_launch_args
    from dp_eval.closed_loop import (ClosedLoopConfig, ClosedLoopError, Variant,
                                     run_closed_loop_series)
    extra = parse_launch_args(ns.launch_args or [])
    ckpts = ns.checkpoints or [extra.get('checkpoint', '')]
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = []
    for i, ckpt in enumerate(ckpts):
        label = ns.labels[i] if ns.labels and i < len(ns.labels) else (
            Path(ckpt).stem if ckpt else 'default')
        bag = None
        if ns.record:
            bag = str(out / (f'run_{label}' if len(ckpts) > 1 else 'run'))
            if Path(bag).exists():
                if not (Path(bag) / 'metadata.yaml').is_file():
                    print(f'dp_eval closed-loop: {bag} exists and is not a bag: remove it or '
                          f'give another --out', file=sys.stderr)
                    return 2
                import shutil
                print(f'dp_eval closed-loop: replacing the bag of an earlier run, {bag}',
                      file=sys.stderr)
                shutil.rmtree(bag)
        variants.append(Variant(str(Path(ckpt).resolve()) if ckpt else '', label, bag))
    for old in (out / 'logs').glob('*.log'):     # the logs of an earlier run
        old.unlink()
    try:
        cfg = ClosedLoopConfig(
            episodes=ns.episodes, seed=ns.seed, episode_timeout_s=ns.episode_timeout,
            startup_timeout_s=ns.startup_timeout, start_graph=not ns.attach,
            launch_args=extra, record_storage=ns.storage, log_dir=str(out / 'logs'),
            progress=not ns.no_progress)
        results = run_closed_loop_series(cfg, variants)
    except (ClosedLoopError, ValueError) as exc:
        print(f'dp_eval closed-loop: {exc}', file=sys.stderr)
        return 2
    print_summary(results)
    _write(results, ns.out, 'Closed-loop evaluation', ns)
    return 1 if any(r['partial'] or r['errors'] for r in results) else 0


def cmd_live(ns) -> int:
    from dp_eval import bagio
    from dp_bringup.cli import parse_launch_args
    from dp_eval.closed_loop import ClosedLoopError
    from dp_eval.live import LiveConfig, run_live
    Path(ns.out).mkdir(parents=True, exist_ok=True)
    try:
        cfg = LiveConfig(bag=ns.bag, out_bag=str(Path(ns.out) / 'recorded'), rate=ns.rate,
                         clock=ns.clock, record_topics=ns.record_topics or None,
                         play_topics=ns.topics, command_topic=ns.command_topic,
                         action_chunk_topic=ns.action_chunk_topic, settle_s=ns.settle,
                         command_joint_names=ns.command_joint_names or [],
                         launch_file=ns.launch_file, launch_args=parse_launch_args(
                             ns.launch_args or []), log_dir=str(Path(ns.out) / 'logs'),
                         progress=not ns.no_progress)
        res = run_live(cfg)
    except (bagio.BagError, ValueError, ClosedLoopError) as exc:
        print(f'dp_eval live: {exc}', file=sys.stderr)
        return 2
    print_summary([res])
    _write([res], ns.out, 'Live replay')
    return 1 if res['partial'] else 0


def cmd_report(ns) -> int:
    results = []
    for f in ns.results:
        data = json.loads(Path(f).read_text())
        results += data['results'] if 'results' in data else [data]
    print_summary(results)
    _write(results, ns.out, ns.title, ns)
    return 0


def _visual_args(p) -> None:
    """Options of the rollout figures and videos (closed-loop results with a recorded bag)."""
    p.add_argument('--fans', type=int, default=3,
                   help='observations whose sampled chunks are drawn (0: none)')
    p.add_argument('--videos', type=int, default=6, help='rollout videos at most (0: none)')
    p.add_argument('--video-successes', type=int, default=2,
                   help='successful episodes among the videos (every failure comes first)')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='dp_eval', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    sub = p.add_subparsers(dest='command', required=True)
    _offline_parser(sub)
    pl = sub.add_parser('play', help='publish a bag on its topics (dp_bag_play)', add_help=False)
    pl.set_defaults(func=None)
    _live_parser(sub)
    _closed_loop_parser(sub)
    r = sub.add_parser('report', help='write the report from result JSON file(s)')
    r.add_argument('results', nargs='+')
    r.add_argument('--out', required=True)
    r.add_argument('--title', default='dp_eval report')
    _visual_args(r)
    r.set_defaults(func=cmd_report)
    return p


def _offline_dataset_config(ns, ckpt: str, base, cams):
    """The DatasetConfig reading the bags for checkpoint `ckpt`: --dataset-config (`base`) with
    the flags, else the flags over what the checkpoint was trained with (raises ValueError /
    CheckpointError on bad values, reported by the caller)."""
    from dp_eval.offline import ACTION_KEYS, dataset_config_for
    from dp_policy.checkpoint import load_checkpoint
    from dp_policy.data.dataset import DatasetConfig
    meta = load_checkpoint(ckpt, verify_weights=False)
    if base is not None:         # the YAML's keys; the action source it omits: the checkpoint's
        base, given = base
        trained = (meta.extra or {}).get('dataset_config') or {}
        return DatasetConfig.from_dict({
            **base.to_dict(),
            **{k: trained[k] for k in ACTION_KEYS if k in trained and k not in given},
            **{k: v for k, v in _action_flags(ns).items() if v is not None},
            **({'cameras': cams} if cams is not None else {})})
    return dataset_config_for(meta, cams,
                              joint_states_topic=ns.joint_states_topic,
                              command_topic=ns.command_topic,
                              command_joint_names=ns.command_joint_names or [],
                              episode_topic=ns.episode_topic, action=_action_flags(ns))


def _action_flags(ns) -> dict:
    """The action source flags given (None: not given)."""
    return {'action_source': ns.action_source, 'future_steps': ns.future_steps,
            'leader_topic': ns.leader_topic, 'leader_joint_names': ns.leader_joint_names,
            'min_motion_rad': ns.min_motion}


def _offline_parser(sub) -> None:
    o = sub.add_parser('offline', help='replay recorded bags through checkpoint(s), as fast as '
                                       'possible, and measure')
    o.add_argument('checkpoints', nargs='+', help='one checkpoint, or two to compare')
    o.add_argument('--bags', nargs='+', required=True, help='bag folders or folders of bags')
    o.add_argument('--out', required=True, help='output folder (result.json, report.html/.md)')
    o.add_argument('--labels', nargs='+', help='names of the checkpoints in the report')
    o.add_argument('--dataset-config', help='YAML with the training DatasetConfig (topics); '
                                            'joints, dt and image size come from the checkpoint')
    o.add_argument('--joint-states-topic', default='/joint_states')
    o.add_argument('--command-topic', default='/forward_position_controller/commands',
                   help="the demonstrator's commands (Float64MultiArray or JointTrajectory)")
    o.add_argument('--command-joint-names', nargs='+',
                   help='joint order of Float64MultiArray commands (default: checkpoint order)')
    o.add_argument('--camera', nargs='+', default=[], metavar='NAME:=TOPIC',
                   help='camera topics (default: the topics the checkpoint was trained on, else /<camera name>/image_raw)')
    o.add_argument('--episode-topic', default='',
                   help='dp_msgs/TaskStatus topic splitting bags into episodes')
    o.add_argument('--action-source', choices=['command', 'joint_states', 'leader'],
                   help="where the bag's actions come from (default: as the checkpoint was "
                        "trained, else command): the command topic, the joint states "
                        "--future-steps later, or a leader arm's joint states")
    o.add_argument('--future-steps', type=int, help='joint_states: grid steps ahead (default 1)')
    o.add_argument('--leader-topic', help='leader: its sensor_msgs/JointState topic '
                                          '(default /leader/joint_states)')
    o.add_argument('--leader-joint-names', nargs='+',
                   help="leader: its joint names for the checkpoint's joints, in order")
    o.add_argument('--min-motion', type=float, metavar='RAD',
                   help='joint_states / leader: episodes whose actions move less are skipped '
                        '(default 0.01)')
    o.add_argument('--batch-size', type=int, default=16)
    o.add_argument('--num-samples', type=int, default=8,
                   help='samples per observation (mode coverage)')
    o.add_argument('--latency-probe', type=int, default=20, help='batch-1 calls for latency')
    o.add_argument('--modes', type=int, default=2, help='k-means modes of demonstrated futures')
    o.add_argument('--max-steps', type=int, default=None, help='stop after this many steps')
    o.add_argument('--backend', default='auto', choices=['auto', 'torch', 'onnxruntime'])
    o.add_argument('--no-warmup', action='store_true',
                   help='skip the backend measurement at start (plain torch; quicker for small runs)')
    o.add_argument('--seed', type=int, default=0)
    o.add_argument('--cache-dir', default=None, help='decoded-episode cache folder')
    o.add_argument('--no-progress', action='store_true')
    o.set_defaults(func=cmd_offline)


def _live_parser(sub) -> None:
    lv = sub.add_parser('live', help="play a bag into the running graph, record the graph's "
                                     'outputs into a new bag, compare with the bag')
    lv.add_argument('bag')
    lv.add_argument('--out', required=True)
    lv.add_argument('--rate', type=float, default=1.0)
    lv.add_argument('--no-clock', dest='clock', action='store_false',
                    help='do not publish /clock (default: publish it; nodes use_sim_time)')
    lv.add_argument('--topics', nargs='+', default=None,
                    help='bag topics to play (default: observations only: joint states, images)')
    lv.add_argument('--record-topics', nargs='+', default=None)
    lv.add_argument('--command-topic', default='/forward_position_controller/commands',
                    help="the demonstrator's commands in the bag (the reference)")
    lv.add_argument('--action-chunk-topic', default='/policy_node/action_chunk')
    lv.add_argument('--command-joint-names', nargs='+',
                    help='joint order of Float64MultiArray commands in the bag')
    lv.add_argument('--settle', type=float, default=1.0, help='seconds recorded after the bag')
    lv.add_argument('--launch-file', default=None,
                    help='start this graph first (e.g. real_arm.launch.py); default: attach')
    lv.add_argument('--launch-args', nargs='+', metavar='NAME:=VALUE',
                    help='its arguments, e.g. robot:=embedded_arm checkpoint:=x.ckpt '
                         'use_sim_time:=true')
    lv.add_argument('--no-progress', action='store_true')
    lv.set_defaults(func=cmd_live)


def _closed_loop_parser(sub) -> None:
    c = sub.add_parser('closed-loop', help='N episodes in the embedded simulation through the '
                                           'real node graph')
    c.add_argument('checkpoints', nargs='*', help='checkpoint(s); two are run one after the other')
    c.add_argument('--out', required=True)
    c.add_argument('--labels', nargs='+')
    c.add_argument('--episodes', type=int, default=10)
    c.add_argument('--seed', type=int, default=0)
    c.add_argument('--episode-timeout', type=float, default=40.0, help='wall s per episode')
    c.add_argument('--startup-timeout', type=float, default=180.0, help='wall s for the graph')
    c.add_argument('--record', action='store_true', help='record the run as a rosbag2')
    c.add_argument('--storage', default='mcap', choices=['mcap', 'sqlite3'])
    c.add_argument('--attach', action='store_true',
                   help='use the graph that is already running (start nothing)')
    c.add_argument('--launch-args', nargs='+', metavar='NAME:=VALUE',
                   help='arguments of sim.launch.py (see dp_launch sim.launch.py --show-args)')
    c.add_argument('--no-progress', action='store_true')
    _visual_args(c)
    c.set_defaults(func=cmd_closed_loop)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'play':
        from dp_eval.player import main as play_main
        return play_main(argv[1:])
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except KeyboardInterrupt:
        print('dp_eval: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
