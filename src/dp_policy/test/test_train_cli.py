"""Tests of the dp_train command line: options, dataset configuration, errors, and one end-to-end
run on a small bag written here that produces a checkpoint `dp_policy.checkpoint` loads."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dp_common.images import image_fields
from dp_common.bags import BagWriter, msgs
from dp_policy.training.cli import build_parser, dataset_config, main

NS = 1_000_000_000
T0 = 50 * NS
JOINTS = ['j1', 'j2']


def write_demo(path, seconds=4.0, camera=True, storage='mcap', phase=0.0):
    with BagWriter(path, storage) as w:
        for k in range(int(seconds * 30)):
            t = T0 + k * NS // 30
            q = [np.sin(k / 30 + phase), np.cos(k / 30 + phase)]
            w.write('/joint_states', msgs.joint_state(t, ['j2', 'extra', 'j1'], [q[1], 0.0, q[0]]), t + 1000)
            if k % 3 == 0:
                w.write('/arm_controller/commands', msgs.float64_multi_array(q), t + 2000)
            if camera and k % 2 == 0:
                img = np.full((12, 16, 3), k % 256, np.uint8)
                w.write('/cam/image_raw', msgs.image(t, image_fields(img, 'rgb8')), t + 3000)
    return Path(path)


def test_help_documents_torchrun_and_options(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for text in ('torchrun', '--nproc_per_node', '--dataset-config', '--preset', '--vision',
                 '--steps', '--batch-size', '--lr', '--seed', '--device', '--no-resume',
                 '--num-workers', '--cache-dir', 'BAG_OR_FOLDER', '--out'):
        assert text in out, text


def test_flags_override_yaml_and_joint_names_default_from_bag(tmp_path):
    bag = write_demo(tmp_path / 'demos' / 'a', seconds=0.5)
    y = tmp_path / 'd.yaml'
    y.write_text('joint_names: [j2, j1]\ncameras: {top: /x}\ncommand_topic: /arm_controller/commands\n'
                 'dt_s: 0.2\nimage_hw: [8, 8]\n')
    args = build_parser().parse_args([str(bag), '--out', 'x', '--dataset-config', str(y),
                                      '--camera', 'front=/cam/image_raw', '--dt', '0.05',
                                      '--image-size', '6x10'])
    cfg = dataset_config(args)
    assert cfg.joint_names == ['j2', 'j1'] and cfg.cameras == {'front': '/cam/image_raw'}
    assert cfg.dt_s == 0.05 and cfg.image_hw == (6, 10)
    assert cfg.command_topic == '/arm_controller/commands'
    args = build_parser().parse_args([str(tmp_path / 'demos'), '--out', 'x', '--quiet'])
    assert dataset_config(args).joint_names == ['j2', 'extra', 'j1']  # the bag's own order


def test_decode_only_prints_summary(tmp_path, capsys):
    write_demo(tmp_path / 'demos' / 'a', seconds=2.0)
    write_demo(tmp_path / 'demos' / 'b', seconds=2.0, storage='sqlite3', phase=1.0)
    rc = main([str(tmp_path / 'demos'), '--out', str(tmp_path / 'run'), '--joint-names', 'j1,j2',
               '--camera', 'front=/cam/image_raw', '--command-topic', '/arm_controller/commands',
               '--decode-only', '--quiet', '--cache-dir', str(tmp_path / 'cache')])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 episode(s)" in out and "cameras ['front']" in out and 'images 12x16' in out
    assert len(list((tmp_path / 'cache').glob('*.npz'))) == 2


def test_errors_exit_2_with_the_reason(tmp_path, capsys):
    bag = write_demo(tmp_path / 'a', seconds=0.5)
    rc = main([str(bag), '--out', str(tmp_path / 'run'), '--joint-names', 'j1,j2', '--quiet'])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'dp_train: error:' in err and '/forward_position_controller/commands' in err
    assert 'topics present' in err and '/arm_controller/commands' in err
    assert main([str(tmp_path / 'nope'), '--out', 'x', '--joint-names', 'a']) == 2
    assert main([str(bag), '--out', 'x', '--joint-names', 'j1', '--device', 'tpu']) == 2


def test_train_end_to_end_produces_loadable_checkpoint(tmp_path, capsys):
    pytest.importorskip('torch')
    from dp_policy.checkpoint import load_checkpoint

    write_demo(tmp_path / 'demos' / 'a', seconds=4.0)
    write_demo(tmp_path / 'demos' / 'b', seconds=4.0, phase=0.5)
    out = tmp_path / 'run'
    rc = main([str(tmp_path / 'demos'), '--out', str(out), '--joint-names', 'j1,j2',
               '--camera', 'front=/cam/image_raw', '--command-topic', '/arm_controller/commands',
               '--image-size', '16x16', '--preset', 'tiny', '--steps', '3', '--batch-size', '4',
               '--seed', '1', '--quiet'])
    text = capsys.readouterr()
    assert rc == 0, text.err
    line = [ln for ln in text.out.splitlines() if 'checkpoint:' in ln][-1]
    ckpt = load_checkpoint(line.split('checkpoint:', 1)[1].strip())
    assert ckpt.joint_names == ['j1', 'j2'] and ckpt.camera_names == ['front']
    assert tuple(ckpt.image_hw) == (16, 16) and ckpt.dt_s == pytest.approx(0.1)
    assert ckpt.train_steps == 3

    # dp_train distill: the teacher's dataset settings (no topic flags), a consistency student
    student_out = tmp_path / 'student'
    rc = main(['distill', str(out / 'policy.ckpt'), str(tmp_path / 'demos'), '--out',
               str(student_out), '--student-steps', '2', '--steps', '2', '--batch-size', '4',
               '--quiet'])
    text = capsys.readouterr()
    assert rc == 0, text.err
    student = load_checkpoint(student_out / 'policy.ckpt')
    assert student.sched_cfg.kind == 'consistency' and student.sched_cfg.num_inference_steps == 2
    assert student.model_cfg == ckpt.model_cfg and student.train_steps == 2
    assert student.extra['distilled_from']['fingerprint'] == ckpt.fingerprint
    # a teacher whose data differ is refused with the difference named
    rc = main(['distill', str(out / 'policy.ckpt'), str(tmp_path / 'demos'), '--out',
               str(tmp_path / 'x'), '--image-size', '8x8', '--steps', '1', '--quiet'])
    assert rc == 2 and 'image size' in capsys.readouterr().err


def test_console_script_entry_point():
    # what `ros2 run dp_policy dp_train` / the installed script executes
    r = subprocess.run([sys.executable, '-c', 'import sys; from dp_policy.training.cli import main; '
                        'sys.exit(main(["--help"]))'], capture_output=True, text=True)
    assert r.returncode == 0 and 'torchrun' in r.stdout
