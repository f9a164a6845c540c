"""Trainer: windows, LR schedule, EMA, seeded determinism, resume, loss files, the regression
baseline through the same checkpoint/policy interface, and clear errors."""
import csv

import numpy as np
import pytest
import torch

import dp_policy.training.trainer as trainer
from dp_policy.checkpoint import load_checkpoint
from dp_policy.config import preset
from dp_policy.data.episode import Episode, EpisodeSetMeta
from dp_policy.data.normalizer import MinMaxNormalizer
from dp_policy.policy import DiffusionPolicy

torch.set_num_threads(1)


def make_episodes(n=4, T=30, cams=('front',), hw=(16, 16), seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        t = np.arange(T) * 0.1
        q = np.stack([np.sin(t + i), np.cos(t + i)], axis=1).astype(np.float32)
        eps.append(Episode(name=f'ep{i}', t=t, state=q, action=np.roll(q, -1, axis=0),
                           images={c: rng.integers(0, 255, (T, *hw, 3), dtype=np.uint8) for c in cams}))
    return eps, EpisodeSetMeta(['j1', 'j2'], list(cams), hw if cams else None, 0.1, 'fp-test')


def tiny_cfgs(steps=6, **train):
    c = preset('tiny')
    c.train = type(c.train)(**{**trainer.to_dict(c.train), 'steps': steps, 'batch_size': 8,
                               'warmup_steps': 2, 'checkpoint_every': 3, 'log_every': 2, **train})
    return c


def run(tmp_path, cfgs, eps, meta, name='run', **kw):
    return trainer.train(eps, meta, cfgs.model, cfgs.vision, cfgs.scheduler, cfgs.train, tmp_path / name,
                         progress=False, **kw)


def test_windows_pad_at_episode_ends_and_never_cross_episodes():
    eps = [Episode(name=f'e{i}', t=np.arange(L) * 0.1, state=np.arange(L, dtype=np.float32)[:, None] + 100 * i,
                   action=np.arange(L, dtype=np.float32)[:, None] + 100 * i) for i, L in enumerate((12, 3))]
    ident = MinMaxNormalizer([-1.0], [1.0])                 # scale 1, centre 0: values pass through
    w = trainer.EpisodeWindows(eps, 2, 8, 4, ident, ident, [])
    assert len(w) == (12 - 4 + 1) + 1                        # "now" 0..8 in ep0; short ep1: one window
    st, _, ac = w.batch(torch.tensor([0, 8, 9]))
    assert st[0, :, 0].tolist() == [0, 0]                   # before the start: first step repeated
    assert ac[0, :, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    assert ac[1, :, 0].tolist() == [7, 8, 9, 10, 11, 11, 11, 11]   # past the end: last step repeated
    assert set(ac[2, :, 0].tolist()) <= {100, 101, 102}     # episode 1 only


def test_lr_warmup_then_cosine_and_ema_decay():
    assert trainer.lr_factor(0.0, 0, 10) == pytest.approx(0.1)
    assert trainer.lr_factor(0.0, 10, 10) == pytest.approx(1.0)
    assert trainer.lr_factor(0.5, 50, 10) == pytest.approx(0.5)
    assert trainer.lr_factor(1.0, 99, 10) == pytest.approx(0.0, abs=1e-12)
    m = torch.nn.Linear(2, 2)
    ema = trainer.EMA(m, 0.99)
    assert ema.decay(0) == pytest.approx(0.1) and ema.decay(10 ** 6) == 0.99
    with torch.no_grad():
        m.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(m, 0)                                       # decay 0.1: 90% of the way to the new weights
    assert torch.allclose(ema.model.weight, before + 0.9, atol=1e-6)


def test_train_writes_checkpoint_loss_files_and_is_seeded(tmp_path):
    eps, meta = make_episodes()
    cfgs = tiny_cfgs()
    a = run(tmp_path, cfgs, eps, meta, 'a', extra={'dataset_config': {'cameras': {'front': '/cam'}}})
    b = run(tmp_path, cfgs, eps, meta, 'b')
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.train_steps == 6 and ca.fingerprint == 'fp-test' and ca.camera_names == ['front']
    assert ca.extra['dataset_config'] == {'cameras': {'front': '/cam'}}
    assert ca.extra['train_summary']['episodes'] == 4
    assert all(torch.equal(ca.state_dict[k], cb.state_dict[k]) for k in ca.state_dict)   # same seed
    rows = list(csv.DictReader(open(tmp_path / 'a' / 'loss.csv')))
    assert [int(r['step']) for r in rows] == [2, 4, 6]
    assert all(np.isfinite(float(r['loss'])) for r in rows)
    assert (tmp_path / 'a' / 'loss.png').stat().st_size > 1000
    cfgs.train.seed = 1
    c = load_checkpoint(run(tmp_path, cfgs, eps, meta, 'c'))
    assert not all(torch.equal(ca.state_dict[k], c.state_dict[k]) for k in ca.state_dict)


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    eps, meta = make_episodes(cams=())
    full = load_checkpoint(run(tmp_path, tiny_cfgs(steps=6), eps, meta, 'full'))
    run(tmp_path, tiny_cfgs(steps=3), eps, meta, 'split')          # stops at 3 (a checkpoint boundary)
    resumed = load_checkpoint(run(tmp_path, tiny_cfgs(steps=6), eps, meta, 'split'))
    assert resumed.train_steps == 6
    for k in full.state_dict:
        assert torch.allclose(full.state_dict[k], resumed.state_dict[k], atol=1e-6), k
    rows = list(csv.DictReader(open(tmp_path / 'split' / 'loss.csv')))
    assert [int(r['step']) for r in rows] == [2, 3, 4, 6]    # 3: the end of the first run
    # other data or network: refused with the reason, nothing overwritten
    other_eps, other_meta = make_episodes(cams=(), seed=1)
    other_meta.fingerprint = 'other'
    with pytest.raises(trainer.TrainError, match='fingerprint'):
        run(tmp_path, tiny_cfgs(steps=9), other_eps, other_meta, 'split')
    assert load_checkpoint(tmp_path / 'split' / 'policy.ckpt').train_steps == 6


def test_time_budget_stops_training(tmp_path):
    eps, meta = make_episodes(cams=())
    cfgs = tiny_cfgs(steps=10 ** 9, max_minutes=0.05)          # 3 s
    ck = load_checkpoint(run(tmp_path, cfgs, eps, meta))
    assert 0 < ck.train_steps < 10 ** 9
    assert ck.extra['train_summary']['elapsed_s'] >= 3.0


def test_regression_baseline_runs_through_the_same_policy_interface(tmp_path):
    eps, meta = make_episodes()
    cfgs = tiny_cfgs()
    cfgs.model.kind = 'regression'
    path = run(tmp_path, cfgs, eps, meta)
    ck = load_checkpoint(path)
    assert ck.model_cfg.kind == 'regression'
    pol = DiffusionPolicy(ck, backend='torch', num_samples=3)
    out = pol.predict(np.zeros((2, 2, 2), np.float32), {'front': np.zeros((2, 2, 16, 16, 3), np.uint8)})
    assert out.samples.shape == (2, 3, 16, 2)
    assert np.allclose(out.samples[:, 0], out.samples[:, 2])   # deterministic: K identical samples


def test_bad_inputs_are_clear_errors(tmp_path):
    eps, meta = make_episodes()
    cfgs = tiny_cfgs()
    with pytest.raises(trainer.TrainError, match='no episodes'):
        run(tmp_path, cfgs, [], meta)
    with pytest.raises(trainer.TrainError, match='CUDA is not available|cuda'):
        if torch.cuda.is_available():
            raise trainer.TrainError('cuda present: nothing to test')
        run(tmp_path, cfgs, eps, meta, device='cuda')
    with pytest.raises(trainer.TrainError, match='device must be'):
        trainer.resolve_device('tpu')
    bad_meta = EpisodeSetMeta(['j1', 'j2', 'j3'], ['front'], (16, 16), 0.1)
    with pytest.raises(trainer.TrainError, match='3 columns'):
        run(tmp_path, cfgs, eps, bad_meta)
    (tmp_path / 'garbled').mkdir()
    (tmp_path / 'garbled' / 'resume.pt').write_bytes(b'garbage')
    with pytest.raises(trainer.TrainError, match='resume.pt.*--no-resume'):
        run(tmp_path, cfgs, eps, meta, 'garbled')
    assert run(tmp_path, cfgs, eps, meta, 'garbled', resume=False)      # --no-resume overwrites


KILLABLE = """
import sys
sys.path.insert(0, {testdir!r})
from test_trainer import make_episodes, tiny_cfgs, run
import pathlib, torch
torch.set_num_threads(1)
eps, meta = make_episodes(n=8)
cfgs = tiny_cfgs(steps=40, checkpoint_every=5, holdout_episodes=2, eval_every=10)
print('start', flush=True)
run(pathlib.Path({out!r}), cfgs, eps, meta, 'killed', resume=True)
"""


def test_killed_at_any_moment_resumes_to_the_same_result(tmp_path):
    """SIGKILL at random moments (mid-step, mid-evaluation, mid-save), then resume: the same
    checkpoint (the best held-out one), EMA weights and held-out log as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    eps, meta = make_episodes(n=8)
    cfgs = tiny_cfgs(steps=40, checkpoint_every=5, holdout_episodes=2, eval_every=10)
    full = load_checkpoint(run(tmp_path, cfgs, eps, meta, 'full'))
    code = KILLABLE.format(testdir=str(Path(__file__).parent), out=str(tmp_path))
    rng = np.random.default_rng(0)
    kills = 0
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS='1'))
        proc.stdout.readline()                          # imports done: training begins
        time.sleep(float(rng.uniform(0.0, 1.5)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        if proc.wait(60) == 0:
            break                                       # this one ran to the end
    assert kills >= 2, 'the runs finished before any kill: make the run longer'
    resumed = load_checkpoint(run(tmp_path, cfgs, eps, meta, 'killed'))     # resume to the end
    assert resumed.train_steps == full.train_steps
    assert resumed.extra['held_out']['step'] == full.extra['held_out']['step']
    for k in full.state_dict:
        assert torch.equal(full.state_dict[k], resumed.state_dict[k]), k
    a = torch.load(tmp_path / 'full' / 'resume.pt', weights_only=True)
    b = torch.load(tmp_path / 'killed' / 'resume.pt', weights_only=True)
    assert a['step'] == b['step'] == 40
    for k in a['ema']:
        assert torch.equal(a['ema'][k], b['ema'][k]), k
    rows = lambda name: [(r['step'], r['score']) for r in csv.DictReader(   # noqa: E731
        open(tmp_path / name / 'eval.csv'))]
    assert rows('killed') == rows('full') and len(rows('full')) == 4


def test_precision_auto_resolves_by_hardware_and_bf16_trains(tmp_path):
    cpu = torch.device('cpu')
    assert trainer.resolve_precision('auto', cpu) == ('bf16' if trainer.native_bf16(cpu) else 'fp32')
    assert trainer.resolve_precision('fp32', cpu) == 'fp32'
    eps, meta = make_episodes()
    ck = load_checkpoint(run(tmp_path, tiny_cfgs(precision='bf16'), eps, meta))
    assert ck.extra['train_summary']['precision'] == 'bf16' and ck.train_steps == 6
    assert all(v.dtype == torch.float32 for v in ck.state_dict.values() if v.is_floating_point())
    pol = DiffusionPolicy(ck, backend='torch')
    out = pol.predict(np.zeros((1, 2, 2), np.float32), {'front': np.zeros((1, 2, 16, 16, 3), np.uint8)})
    assert np.all(np.isfinite(out.actions))
    with pytest.raises(ValueError, match='precision'):
        tiny_cfgs(precision='fp16')


def test_held_out_evaluation_keeps_the_best_checkpoint(tmp_path, monkeypatch):
    """policy.ckpt is the checkpoint of the best held-out score, not the last; the held-out
    episodes are not trained on; eval.csv and the report record every evaluation."""
    scores = iter([0.3, 0.1, 0.2])
    seen = {}

    def fake_evaluate(self, ckpt):
        seen['windows'] = len(self)
        s = next(scores)
        return {'rmse': s, 'rmse_executed': s, 'mode_js_bits': 0.0, 'score': s, 'windows': 1,
                'eval_s': 0.0}
    monkeypatch.setattr(trainer.HeldOut, 'evaluate', fake_evaluate)
    eps, meta = make_episodes(n=6)
    ck = load_checkpoint(run(tmp_path, tiny_cfgs(steps=6, eval_every=2, holdout_episodes=2), eps,
                             meta))
    assert ck.train_steps == 4 and ck.extra['held_out']['step'] == 4     # the 0.1 one
    assert ck.extra['train_summary']['episodes'] == 4 and seen['windows'] > 0
    rows = list(csv.DictReader(open(tmp_path / 'run' / 'eval.csv')))
    assert [int(r['step']) for r in rows] == [2, 4, 6]
    assert (tmp_path / 'run' / 'report.png').stat().st_size > 5000
    assert 'Held-out evaluations' in (tmp_path / 'run' / 'report.html').read_text()
    train_eps, held = trainer.split_holdout(eps, 2, 0)
    assert len(held) == 2 and not {e.name for e in held} & {e.name for e in train_eps}


def test_held_out_evaluation_does_not_change_the_training(tmp_path):
    """The evaluation leaves the global RNG alone: the same weights with and without it."""
    eps, meta = make_episodes(n=6)
    train_eps, _ = trainer.split_holdout(eps, 2, 0)
    a = load_checkpoint(run(tmp_path, tiny_cfgs(steps=6, eval_every=2, holdout_episodes=2), eps,
                            meta, 'with'))
    raw_a = torch.load(tmp_path / 'with' / 'resume.pt', weights_only=True)['ema']
    run(tmp_path, tiny_cfgs(steps=6), train_eps, meta, 'without')
    raw_b = torch.load(tmp_path / 'without' / 'resume.pt', weights_only=True)['ema']
    for k in raw_a:
        assert torch.equal(raw_a[k], raw_b[k]), k
    assert a.extra['held_out']['windows'] > 0
