"""`dp_train`: train a Diffusion Policy checkpoint from rosbag2 demonstrations.

    dp_train demos/ --out runs/pick --joint-names shoulder,elbow,wrist --camera front=/cam/image_raw
    dp_train distill runs/pick/policy.ckpt demos/ --out runs/pick-1step --student-steps 1

The second form distils a trained checkpoint into a consistency student (training/distill.py)
that samples in 1-3 network calls; the data are read with the teacher's dataset settings.

Reads the bags with `dataset.load_episodes` (cached decode), or one LeRobot v3.0 dataset folder
with `lerobot.read_lerobot`, then hands the episodes to `trainer.train`. Topics come from flags
or from `--dataset-config FILE.yaml` (flags win); the network from `--preset` plus overrides.
ROS-free: runs without a ROS graph (no rclpy import).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

EPILOG = """\
outputs in --out: policy.ckpt (deployable, EMA weights; what policy_node loads), resume.pt (training
state: a second run with the same --out continues from it), loss.csv and loss.png (the loss curve).

examples:
  dp_train demos/ --out runs/arm --camera front=/camera/image_raw --max-minutes 5
  dp_train demos/ --out runs/arm-mse --camera front=/camera/image_raw --max-minutes 5 --model regression
  dp_train demos/ --out runs/paper --preset paper --device cuda --steps 100000

dataset config (YAML, keys of DatasetConfig; a top-level `dataset:` mapping is accepted too):
  joint_names: [shoulder, elbow, wrist]        # policy order; default: the bag's first JointState
  cameras: {front: /camera/image_raw}          # camera name -> Image or CompressedImage topic
  joint_states_topic: /joint_states
  command_topic: /forward_position_controller/commands
  command_type: auto                           # auto | float64_multi_array | joint_trajectory
  command_joint_names: []                      # Float64MultiArray order; [] = joint_names
  dt_s: 0.1
  image_hw: [96, 96]                           # resize every camera; omit to keep the size
  episode_topic: ''                            # dp_msgs/TaskStatus topic splitting bags into episodes

a LeRobot v3.0 dataset folder (dp_bag_to_lerobot writes one) trains as it is:
  dp_train lerobot/pick --out runs/pick [--joint-names A,B] [--image-size 96x96]

decoded bags are cached (one .npz per bag, default <first bag's parent>/.dp_cache); a second run
with the same bags and decode settings starts training at once.

multi-GPU (DistributedDataParallel), one process per GPU:
  torchrun --standalone --nproc_per_node=4 "$(which dp_train)" demos/ --out runs/x --device cuda
  several nodes: torchrun --nnodes=2 --node_rank=R --nproc_per_node=8 \\
      --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 "$(which dp_train)" demos/ --out runs/x --device cuda
  decode the cache once first (dp_train ... --decode-only) so that ranks do not all decode the bags.
"""


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace(',', 'x').split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected HxW (e.g. 96x96), got {text!r}') from None
    return h, w


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(',') if n.strip()]


def _camera(text: str) -> tuple[str, str]:
    if '=' not in text:
        raise argparse.ArgumentTypeError(f'expected NAME=TOPIC, got {text!r}')
    name, topic = text.split('=', 1)
    return name.strip(), topic.strip()


def _mask(text: str) -> tuple[str, dict]:
    """--mask-robot CAM=FRAME:FX,FY,CX,CY:WxH -> (camera, {frame, K, size (height, width)})."""
    try:
        cam, rest = text.split('=', 1)
        frame, k, wh = rest.split(':')
        K = [float(v) for v in k.split(',')]
        w, h = (int(v) for v in wh.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected CAM=FRAME:FX,FY,CX,CY:WxH, got {text!r}') \
            from None
    if len(K) != 4:
        raise argparse.ArgumentTypeError(f'K needs 4 numbers fx,fy,cx,cy, got {k!r}')
    return cam.strip(), {'frame': frame.strip(), 'K': K, 'size': [h, w]}


def build_parser() -> argparse.ArgumentParser:
    from dp_policy.config import PRESETS

    p = argparse.ArgumentParser(
        prog='dp_train', description='Train a Diffusion Policy checkpoint from rosbag2 demonstrations '
        '(sqlite3 or mcap). BAG arguments are bag folders or folders holding bags (every folder '
        'with a metadata.yaml below them), or one LeRobot v3.0 dataset folder (meta/info.json: '
        'its joints, cameras and fps; the topic flags do not apply).',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('bags', nargs='+', metavar='BAG_OR_FOLDER')
    p.add_argument('--out', required=True, metavar='CKPT_DIR',
                   help='output folder: checkpoints, resume state, loss curve')
    _dataset_args(p)
    m = p.add_argument_group('model and training')
    m.add_argument('--preset', default='cpu_default', choices=sorted(PRESETS),
                   help='network/training preset (default cpu_default; paper = Chi et al. 2023)')
    m.add_argument('--vision', choices=['small_cnn', 'resnet18'], help='image encoder (default: preset)')
    m.add_argument('--model', choices=['diffusion', 'regression'], default='diffusion',
                   help='diffusion (the policy) or regression (MSE baseline: same encoders, predicts '
                        'the chunk directly; same checkpoint format and policy interface)')
    _training_args(m)
    return p


DISTILL_EPILOG = """\
the student has the teacher's network, normalisers and noise schedule and starts from its
weights; its checkpoint (policy.ckpt in --out) samples with `consistency` in --student-steps
network calls and is loaded like any other (policy_node, dp_eval, every backend). The bags are
read with the dataset settings stored in the teacher (dp_train wrote them); flags and
--dataset-config override them.

example:
  dp_train distill models/reach_image.ckpt data/demos --out runs/reach-1step --max-minutes 9
"""


def build_distill_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='dp_train distill', description='Consistency distillation of a trained Diffusion '
        'Policy checkpoint into a 1-3 step student (training/distill.py).',
        epilog=DISTILL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('teacher', metavar='TEACHER.ckpt')
    p.add_argument('bags', nargs='+', metavar='BAG_OR_FOLDER')
    p.add_argument('--out', required=True, metavar='CKPT_DIR')
    _dataset_args(p)
    m = p.add_argument_group('distillation')
    m.add_argument('--student-steps', type=int, default=1, choices=[1, 2, 3],
                   help="the student's sampling steps stored in its checkpoint (default 1)")
    m.add_argument('--segments', type=int, default=10,
                   help="intervals of the teacher's DDIM solver grid over the noise levels "
                        '(default 10)')
    _training_args(m)
    return p


def _training_args(m) -> None:
    m.add_argument('--steps', type=int, help='training steps (default: preset; with --max-minutes '
                   'alone: unlimited)')
    m.add_argument('--max-minutes', type=float, metavar='MIN',
                   help='stop after MIN minutes of training; the cosine LR decays over that budget')
    m.add_argument('--batch-size', type=int)
    m.add_argument('--precision', choices=['auto', 'fp32', 'bf16'],
                   help='training arithmetic: bf16 autocast, fp32, or auto (bf16 where the hardware '
                        'has it natively; default: preset)')
    m.add_argument('--holdout', type=int, metavar='N',
                   help='episodes kept out of training and evaluated every --eval-every steps; '
                        'policy.ckpt is the best scored (default: preset; 0 = off, the last)')
    m.add_argument('--eval-every', type=int, metavar='STEPS', help='held-out evaluation period')
    m.add_argument('--lr', type=float)
    m.add_argument('--seed', type=int)
    m.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu); under torchrun '
                   'cuda means cuda:LOCAL_RANK')
    m.add_argument('--threads', type=int, metavar='N', help='torch CPU threads (default: torch default)')
    m.add_argument('--resume', action=argparse.BooleanOptionalAction, default=True,
                   help='continue from the resume state in --out if there is one (default: yes)')
    m.add_argument('--num-workers', type=int, default=0, help='data-loading worker processes')
    m.add_argument('--decode-only', action='store_true',
                   help='decode the bags into the cache, print the summary and stop')
    m.add_argument('--quiet', action='store_true', help='no progress output')


def _dataset_args(p) -> None:
    d = p.add_argument_group('dataset (flags override --dataset-config)')
    d.add_argument('--dataset-config', metavar='YAML', help='DatasetConfig as YAML (see below)')
    d.add_argument('--joint-names', type=_names, metavar='A,B,C',
                   help="policy's joints in order (default: the bag's first JointState)")
    d.add_argument('--camera', type=_camera, action='append', metavar='NAME=TOPIC',
                   help='a camera (Image or CompressedImage topic); repeat for several; '
                        'none given and none in the YAML: a state-only policy')
    d.add_argument('--joint-states-topic', metavar='TOPIC')
    d.add_argument('--command-topic', metavar='TOPIC', help="the demonstrator's commands")
    d.add_argument('--command-type', choices=['auto', 'float64_multi_array', 'joint_trajectory'])
    d.add_argument('--command-joint-names', type=_names, metavar='A,B,C',
                   help='joint order of Float64MultiArray commands (default: --joint-names)')
    d.add_argument('--episode-topic', metavar='TOPIC',
                   help='dp_msgs/TaskStatus topic whose `episode` changes split a bag')
    d.add_argument('--action-source', choices=['command', 'joint_states', 'leader'],
                   help="the actions: the command topic (default), the joint states "
                        "--future-steps later (bags of /joint_states alone), or a leader arm's "
                        'joint states (--leader-topic)')
    d.add_argument('--future-steps', type=int, metavar='K',
                   help='joint_states: the action at t is the state at t + K dt (default 1)')
    d.add_argument('--leader-topic', metavar='TOPIC',
                   help='leader: its sensor_msgs/JointState (default /leader/joint_states)')
    d.add_argument('--leader-joint-names', type=_names, metavar='A,B,C',
                   help="leader: its joint names for --joint-names, in order (default: the same)")
    d.add_argument('--min-motion', type=float, metavar='RAD',
                   help='joint_states / leader: episodes whose actions move less are skipped '
                        '(default 0.01)')
    d.add_argument('--action-space', choices=['joint', 'ee_pose'],
                   help="joint (default): joint positions; ee_pose: state and actions are the pose "
                        "of --tip-link (xyz + 6D rotation) by the forward kinematics of --urdf")
    d.add_argument('--urdf', metavar='FILE', help='ee_pose: URDF of the arm that recorded the data')
    d.add_argument('--tip-link', metavar='LINK', help='ee_pose: the end-effector link (default tool0)')
    d.add_argument('--mask-robot', type=_mask, action='append', metavar='CAM=FRAME:FX,FY,CX,CY:WxH',
                   help="paint the arm out of camera CAM's images (needs --urdf; FRAME: the "
                        "camera's optical frame in the URDF, FX..CY: its camera_info K for "
                        'WxH images); the policy node paints its own robot out the same way')
    d.add_argument('--dt', type=float, metavar='S', help='grid step in seconds (default 0.1)')
    d.add_argument('--image-size', type=_hw, metavar='HxW', help='resize every camera to HxW')
    d.add_argument('--cache-dir', metavar='DIR', help='decoded-episode cache (default '
                   '<first bag parent>/.dp_cache)')


def dataset_config(args: argparse.Namespace, base: Optional[dict] = None):
    """The DatasetConfig from `base` (a distilled teacher's), --dataset-config and the flags
    (flags win)."""
    from dp_policy.data.dataset import DatasetConfig, find_bags, infer_joint_names

    data: dict = dict(base or {})
    if args.dataset_config:
        import yaml

        with open(args.dataset_config) as f:
            data = yaml.safe_load(f) or {}
        if isinstance(data.get('dataset'), dict):
            data = data['dataset']
    flags = {'joint_names': args.joint_names, 'joint_states_topic': args.joint_states_topic,
             'command_topic': args.command_topic, 'command_type': args.command_type,
             'command_joint_names': args.command_joint_names, 'episode_topic': args.episode_topic,
             'dt_s': args.dt, 'image_hw': args.image_size, 'action_source': args.action_source,
             'future_steps': args.future_steps, 'leader_topic': args.leader_topic,
             'leader_joint_names': args.leader_joint_names, 'min_motion_rad': args.min_motion,
             'action_space': args.action_space, 'urdf': args.urdf, 'tip_link': args.tip_link,
             'robot_mask': dict(args.mask_robot) if args.mask_robot else None}
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.camera:
        data['cameras'] = dict(args.camera)
    if not data.get('joint_names'):
        bag = find_bags(args.bags)[0]
        data['joint_names'] = infer_joint_names(bag, data.get('joint_states_topic', '/joint_states'))
        if not args.quiet:
            print(f'[dp_train] joint names from {bag}: {data["joint_names"]}', file=sys.stderr)
    return DatasetConfig.from_dict(data)


def _train_overrides(args: argparse.Namespace, **fields) -> dict:
    """The TrainConfig fields the command line sets (`fields` first; None: keep the preset's or
    the teacher's); sets torch's thread count where --threads is given."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    given = {'batch_size': args.batch_size, 'lr': args.lr, 'seed': args.seed,
             'max_minutes': args.max_minutes, 'precision': args.precision,
             'holdout_episodes': args.holdout, 'eval_every': args.eval_every, **fields}
    return {k: v for k, v in given.items() if v is not None}


def _check_device(device: str) -> None:
    from dp_policy.training.trainer import resolve_device

    resolve_device(device)   # raises TrainError (a ValueError) naming the problem


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['distill']:
        return distill_main(argv[1:])
    args = build_parser().parse_args(argv)
    from dataclasses import replace

    from dp_policy.config import preset
    from dp_policy.data.dataset import DatasetError

    progress = not args.quiet
    t_start = time.monotonic()
    try:
        _check_device(args.device)
        cfgs = preset(args.preset)
        vision = replace(cfgs.vision, encoder=args.vision) if args.vision else cfgs.vision
        model_cfg = replace(cfgs.model, kind=args.model)
        steps = args.steps
        if steps is None and args.max_minutes:
            steps = 10 ** 9        # the time budget ends the run
        train_cfg = replace(cfgs.train, **_train_overrides(args, steps=steps))
        episodes, meta, extra = load_training_data(args, progress=progress)
    except (DatasetError, ValueError, OSError) as err:
        print(f'dp_train: error: {err}', file=sys.stderr)
        return 2
    return _train_and_report(args, episodes, meta, t_start, lambda trainer, kwargs: trainer.train(
        episodes, meta, model_cfg, vision, cfgs.scheduler, train_cfg, args.out, **kwargs),
        f'{args.model}, preset {args.preset}, vision {vision.encoder}, batch '
        f'{train_cfg.batch_size}, lr {train_cfg.lr}', extra)


BAG_ONLY = ('dataset_config', 'camera', 'mask_robot', 'joint_states_topic', 'command_topic',
            'command_type',
            'command_joint_names', 'episode_topic', 'action_source', 'future_steps', 'leader_topic',
            'leader_joint_names', 'min_motion', 'cache_dir')


def lerobot_folder(args: argparse.Namespace) -> Optional[str]:
    """The LeRobot dataset folder (meta/info.json) that is the only BAG_OR_FOLDER, else None."""
    from dp_policy.data.lerobot import is_lerobot_dataset

    return args.bags[0] if len(args.bags) == 1 and is_lerobot_dataset(args.bags[0]) else None


def load_training_data(args: argparse.Namespace, base: Optional[dict] = None,
                       joint_names: Optional[list] = None, progress: bool = True):
    """(episodes, meta, checkpoint extra) from a LeRobot dataset folder (data/lerobot.py: joints
    from --joint-names, else `joint_names`, else the dataset's feature names; its cameras; its
    fps) or from bags (`dataset_config`, `load_episodes`; `base`: a teacher's dataset config)."""
    folder = lerobot_folder(args)
    if folder is None:
        from dp_policy.data.dataset import load_episodes

        cfg = dataset_config(args, base)
        episodes, meta = load_episodes(args.bags, cfg, cache_dir=args.cache_dir, progress=progress)
        return episodes, meta, {'dataset_config': cfg.to_dict()}
    from dp_policy.data.lerobot import dataset_summary, read_lerobot

    bag_only = [f'--{k.replace("_", "-")}' for k in BAG_ONLY if getattr(args, k, None)]
    if bag_only:
        raise ValueError(f'{folder} is a LeRobot dataset: {", ".join(bag_only)} apply to bags only '
                         f'(its cameras, joints and fps come from meta/info.json)')
    episodes, meta = read_lerobot(folder, joint_names=args.joint_names or joint_names,
                                  image_hw=args.image_size, progress=progress)
    if args.dt is not None and abs(args.dt - meta.dt_s) > 1e-9:
        raise ValueError(f'{folder}: --dt {args.dt} differs from the dataset\'s {meta.dt_s:g} s '
                         f'(1 / fps); LeRobot datasets are not resampled')
    if args.action_space == 'ee_pose':
        from dp_policy.data.spaces import to_end_effector

        if not args.urdf:
            raise ValueError('--action-space ee_pose needs --urdf (the arm that recorded the data)')
        episodes, meta = to_end_effector(episodes, meta, args.urdf, args.tip_link or 'tool0')
    return episodes, meta, {'lerobot_dataset': dict(dataset_summary(folder),
                                                    joint_names=list(meta.joint_names),
                                                    camera_names=list(meta.camera_names))}


def _train_and_report(args, episodes, meta, t_start: float, run, what: str, extra: dict) -> int:
    """Print the data summary, run `run(trainer, kwargs)` (unless --decode-only), report."""
    n_samples = sum(len(e) for e in episodes)
    t_data = time.monotonic() - t_start
    print(f'[dp_train] {len(episodes)} episode(s), {n_samples} samples '
          f'({n_samples * meta.dt_s:.1f} s of demonstration at dt={meta.dt_s}s), joints '
          f'{meta.joint_names}, cameras {meta.camera_names or "none"}'
          f'{f", images {meta.image_hw[0]}x{meta.image_hw[1]}" if meta.image_hw else ""}; '
          f'data ready in {t_data:.1f}s', flush=True)
    if args.decode_only:
        return 0

    import dp_policy.training.trainer as trainer

    kwargs = dict(device=args.device, resume=args.resume, progress=not args.quiet,
                  num_workers=args.num_workers, extra=extra)
    t_train = time.monotonic()
    try:
        ckpt = run(trainer, kwargs)
    except KeyboardInterrupt:
        print('[dp_train] interrupted; the last saved state in --out resumes with --resume',
              file=sys.stderr)
        return 130
    except ValueError as err:  # bad configuration for these episodes (too short, shapes)
        print(f'dp_train: error: {err}', file=sys.stderr)
        return 2
    from dp_policy.checkpoint import load_checkpoint

    done = load_checkpoint(ckpt, verify_weights=False).train_steps
    print(f'[dp_train] {done} steps ({what}, device {args.device}) in '
          f'{time.monotonic() - t_train:.1f}s; total {time.monotonic() - t_start:.1f}s', flush=True)
    print(f'[dp_train] checkpoint: {ckpt}', flush=True)
    return 0


DISTILL_DEFAULTS = {'steps': 3000, 'lr': 1e-3, 'warmup_steps': 100}   # lr: the reach student's


def distill_main(argv: Sequence[str]) -> int:
    """dp_train distill TEACHER.ckpt BAGS... --out DIR (see build_distill_parser)."""
    args = build_distill_parser().parse_args(argv)
    from dataclasses import replace

    from dp_policy.checkpoint import load_checkpoint
    from dp_policy.data.dataset import DatasetError
    from dp_policy.training.distill import student_scheduler

    t_start = time.monotonic()
    try:
        _check_device(args.device)
        teacher = load_checkpoint(args.teacher)
        sched = student_scheduler(teacher.sched_cfg, args.student_steps)
        steps = args.steps
        if steps is None:
            steps = 10 ** 9 if args.max_minutes else DISTILL_DEFAULTS['steps']
        train_cfg = replace(teacher.train_cfg, **_train_overrides(
            args, steps=steps, lr=args.lr or DISTILL_DEFAULTS['lr'],
            warmup_steps=DISTILL_DEFAULTS['warmup_steps']))
        space = teacher.action_space
        if space is not None and args.action_space is None:   # the teacher's, its URDF's text
            args.action_space, args.urdf, args.tip_link = space['kind'], space['urdf'], \
                space['tip_link']
        episodes, meta, extra = load_training_data(
            args, teacher.extra.get('dataset_config'), teacher.joint_names, not args.quiet)
    except (DatasetError, ValueError, OSError) as err:
        print(f'dp_train distill: error: {err}', file=sys.stderr)
        return 2
    extra = {**extra,
             'distilled_from': {'teacher': str(args.teacher), 'fingerprint': teacher.fingerprint,
                                'teacher_steps': int(teacher.train_steps),
                                'teacher_sampler': f'{teacher.sched_cfg.kind}-'
                                                   f'{teacher.sched_cfg.num_inference_steps}',
                                'segments': args.segments}}
    return _train_and_report(args, episodes, meta, t_start, lambda trainer, kwargs: trainer.train(
        episodes, meta, teacher.model_cfg, teacher.vision_cfg, sched, train_cfg, args.out,
        teacher=teacher, distill_segments=args.segments, **kwargs),
        f'consistency distillation of {args.teacher}, {args.student_steps} step(s), batch '
        f'{train_cfg.batch_size}, lr {train_cfg.lr}', extra)


if __name__ == '__main__':
    sys.exit(main())
