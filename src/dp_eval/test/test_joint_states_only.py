"""A bag of /joint_states alone, end to end: dp_train --action-source joint_states trains on it
and dp_eval offline evaluates the checkpoint on it with the action source the checkpoint stores."""
from pathlib import Path

import numpy as np
import pytest

from dp_common.bags import BagWriter, msgs
from dp_eval.cli import main as eval_main
from dp_policy.training.cli import main as train_main

NS = 1_000_000_000
T0 = 50 * NS


def test_a_bag_of_joint_states_alone_trains_and_evaluates(tmp_path, capsys):
    """/joint_states only (no command topic, no camera): dp_train --action-source joint_states
    trains; dp_eval offline takes the action source from the checkpoint and evaluates on the same
    bag without being told; a still bag is refused naming the bag and the topic, exit 2."""
    pytest.importorskip('torch')

    def js_only(path, seconds, still=False):
        with BagWriter(path, 'sqlite3') as w:
            for k in range(int(seconds * 30)):
                t = T0 + k * NS // 30
                q = [0.3, 0.1] if still else [np.sin(k / 30), np.cos(k / 30)]
                w.write('/joint_states', msgs.joint_state(t, ['j1', 'j2'], q), t + 1000)
        return Path(path)
    bag = js_only(tmp_path / 'demos' / 'a', 4.0)
    out = tmp_path / 'run'
    rc = train_main([str(bag), '--out', str(out), '--action-source', 'joint_states',
                     '--preset', 'tiny', '--steps', '3', '--batch-size', '4', '--quiet'])
    text = capsys.readouterr()
    assert rc == 0, text.err
    rc = eval_main(['offline', str(out / 'policy.ckpt'), '--bags', str(bag), '--out',
                    str(tmp_path / 'eval'), '--no-warmup', '--num-samples', '2',
                    '--latency-probe', '2', '--max-steps', '8', '--no-progress'])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert (tmp_path / 'eval' / 'result.json').is_file()

    still = js_only(tmp_path / 'still' / 'b', 2.0, still=True)
    rc = train_main([str(still), '--out', str(tmp_path / 'r2'), '--action-source',
                     'joint_states', '--preset', 'tiny', '--steps', '1', '--quiet'])
    err = capsys.readouterr().err
    assert rc == 2 and 'dp_train: error:' in err and str(still) in err
    assert '/joint_states' in err and 'no episode moves' in err and 'Traceback' not in err



def test_bad_action_flags_exit_2_with_the_reason(tmp_path, capsys):
    from dp_policy.checkpoint import create_untrained_checkpoint
    ckpt = create_untrained_checkpoint(tmp_path / 'c.ckpt', ['j1', 'j2'], [], None, preset='tiny')
    for flags, text in ((['--future-steps', '0'], 'future_steps must be >= 1'),
                        (['--action-source', 'leader', '--leader-joint-names', 'a'],
                         'leader_joint_names')):
        rc = eval_main(['offline', str(ckpt), '--bags', str(tmp_path), '--out',
                        str(tmp_path / 'e'), *flags])
        err = capsys.readouterr().err
        assert rc == 2 and text in err and 'Traceback' not in err


def test_a_dataset_config_without_an_action_source_keeps_the_checkpoints(tmp_path):
    """--dataset-config (topics) that says nothing of the actions: the checkpoint's action source
    (joint_states) applies; one that says `action_source: command` wins."""
    from types import SimpleNamespace

    from dp_eval.cli import _offline_dataset_config
    from dp_policy.checkpoint import create_untrained_checkpoint, load_checkpoint
    from dp_policy.data.dataset import DatasetConfig
    path = create_untrained_checkpoint(tmp_path / 'c.ckpt', ['j1', 'j2'], [], None, preset='tiny')
    ckpt = load_checkpoint(path)
    ckpt.extra['dataset_config'] = {'action_source': 'joint_states', 'future_steps': 2}
    ckpt.save(tmp_path / 'js.ckpt')
    ns = SimpleNamespace(action_source=None, future_steps=None, leader_topic=None,
                         leader_joint_names=None, min_motion=None)
    base = DatasetConfig(joint_names=['j1', 'j2'], joint_states_topic='/arm/joint_states')
    cfg = _offline_dataset_config(ns, str(tmp_path / 'js.ckpt'), (base, {'joint_states_topic'}),
                                  None)
    assert cfg.action_source == 'joint_states' and cfg.future_steps == 2
    assert cfg.joint_states_topic == '/arm/joint_states'
    cfg = _offline_dataset_config(ns, str(tmp_path / 'js.ckpt'), (base, {'action_source'}), None)
    assert cfg.action_source == 'command'
