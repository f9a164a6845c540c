"""Guided sampling's pieces (ROS-free): the relaxed barrier, obstacle distances, the costs, and the
property that guidance brings chunks inside random joint limits and out of a known obstacle."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dp_policy.guidance.costs import (ChunkConstraints, CostWeights, Obstacle, clearance,
                                      cost_terms, hard_violations, relaxed_log_barrier)
from dp_policy.guidance.guide import Guidance, GuidanceConfig
from dp_policy.guidance.kinematics import TorchKinematics

# A planar two-link arm (links 0.3 m along x, joints about z), capsule collision geometry.
URDF = """<robot name="planar">
  <link name="base"/>
  <link name="l1"><collision><origin xyz="0.15 0 0"/>
    <geometry><box size="0.3 0.02 0.02"/></geometry></collision></link>
  <link name="l2"><collision><origin xyz="0.15 0 0" rpy="0 1.5707963267948966 0"/>
    <geometry><cylinder radius="0.01" length="0.3"/></geometry></collision></link>
  <link name="tip"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <axis xyz="0 0 1"/><limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/><origin xyz="0.3 0 0"/>
    <axis xyz="0 0 1"/><limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="tip_joint" type="fixed"><parent link="l2"/><child link="tip"/>
    <origin xyz="0.3 0 0"/></joint>
</robot>"""
FK = TorchKinematics.from_urdf(URDF, tip='tip')


def test_relaxed_barrier_is_c1_zero_beyond_d0_and_points_inside():
    """Finite everywhere, 0 from d0 on, C1 at delta and at d0, its gradient pointing inside."""
    d = torch.linspace(-0.5, 1.0, 3001, dtype=torch.float64, requires_grad=True)
    b = relaxed_log_barrier(d, d0=0.5, delta=0.1)
    (g,) = torch.autograd.grad(b.sum(), d)
    assert torch.all(b[d.detach() >= 0.5] == 0)
    assert torch.all(g[d.detach() < 0.5] < 0)                 # descending the cost moves inside
    assert torch.all(torch.isfinite(b)) and torch.all(torch.isfinite(g))
    for at in (0.1, 0.5):                       # continuous with a continuous slope at delta, d0
        i = int(torch.argmin(torch.abs(d.detach() - at)))
        assert abs(b[i - 1].item() - b[i + 1].item()) < 0.05
        assert abs(g[i - 1].item() - g[i + 1].item()) < 0.2   # curvature 1/delta^2 over 2 steps: 0.1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=3, max_size=3))
def test_obstacle_distances(p):
    p = torch.tensor(p, dtype=torch.float64)
    s = Obstacle('sphere', centre=(0.1, 0.2, 0.0), radius=0.2)
    assert s.distance(p).item() == pytest.approx(float(np.linalg.norm(p - torch.tensor(
        [0.1, 0.2, 0.0]))) - 0.2, abs=1e-6)
    c = Obstacle('capsule', a=(0, 0, -0.5), b=(0, 0, 0.5), radius=0.1)
    z = min(max(p[2].item(), -0.5), 0.5)
    expect = math.dist(p.tolist(), [0, 0, z]) - 0.1
    assert c.distance(p).item() == pytest.approx(expect, abs=1e-6)
    box = Obstacle('box', centre=(0, 0, 0), size=(0.2, 0.3, 0.4))
    q = np.abs(p.numpy()) - [0.2, 0.3, 0.4]
    expect = np.linalg.norm(np.maximum(q, 0)) + min(q.max(), 0)
    assert box.distance(p).item() == pytest.approx(expect, abs=1e-6)
    turned = Obstacle('box', centre=(0, 0, 0), size=(0.2, 0.3, 0.4), rpy=(0, 0, math.pi / 2))
    swapped = Obstacle('box', centre=(0, 0, 0), size=(0.3, 0.2, 0.4))
    assert turned.distance(p).item() == pytest.approx(swapped.distance(p).item(), abs=1e-6)


def _guide(constraints, weights=None, **cfg):
    """A Guidance for the last denoising step of a loop, identity normaliser."""
    j = constraints.lower.shape[0]
    g = Guidance(GuidanceConfig(weights=weights or CostWeights(), **cfg), constraints,
                 center=np.zeros(j), scale=np.ones(j), num_steps=10)
    return g


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.3, 2.0), st.floats(-1.0, 1.0))
def test_guided_chunks_end_inside_random_limits(seed, width, centre):
    """Random chunks, up to 0.3 rad outside random limits: after the last guided step none is
    outside (the barrier's gradient points inside everywhere and the final step iterates)."""
    rng = np.random.default_rng(seed)
    lower = torch.tensor(centre - width / 2 + rng.uniform(-0.2, 0.2, 3))
    upper = lower + width
    c = ChunkConstraints(lower=lower, upper=upper, dt_s=0.1)
    t = np.linspace(0, 1, 16)[:, None]
    q0 = rng.uniform(lower.numpy() - 0.3, upper.numpy() + 0.3, (8, 1, 3)) \
        + 0.2 * np.sin(3 * t + rng.uniform(0, 6, (8, 1, 3)))
    x0 = torch.tensor(q0, dtype=torch.float32)
    g = _guide(c, final_iterations=40)
    out = g(9, x0).double()
    assert not hard_violations(out, c).any(), (out.min().item(), out.max().item())
    assert torch.all(out >= lower - 1e-6) and torch.all(out <= upper + 1e-6)


def test_guidance_leaves_a_safe_chunk_alone():
    c = ChunkConstraints(lower=torch.full((3,), -2.0), upper=torch.full((3,), 2.0), dt_s=0.1)
    x0 = torch.tensor(0.2 * np.sin(np.linspace(0, 1, 16))[None, :, None].repeat(3, -1),
                      dtype=torch.float32)
    out = _guide(c)(9, x0)
    torch.testing.assert_close(out, x0)


def test_chunks_are_pushed_out_of_a_known_obstacle():
    """A sphere obstacle on the path of the planar arm's tip: guided chunks end with every
    collision sphere clear of it by the margin."""
    obstacle = Obstacle('sphere', centre=(0.45, 0.25, 0.0), radius=0.05)
    w = CostWeights(obstacle_margin_m=0.01, obstacle_d0_m=0.05)
    c = ChunkConstraints(lower=torch.full((2,), -3.0), upper=torch.full((2,), 3.0), dt_s=0.1,
                         kinematics=FK, obstacles=[obstacle])
    sweep = np.linspace(0.0, 1.2, 16)                       # j1 sweeps the arm through it
    q0 = np.stack([sweep, np.full(16, 0.3)], -1)[None].repeat(4, 0)
    q0 += np.random.default_rng(0).normal(0, 0.02, q0.shape)
    before = clearance(torch.tensor(q0), c)
    assert before.min() < 0.0                                   # it goes through the obstacle
    out = _guide(c, w, final_iterations=60, max_step_rad=0.05, eta=0.01)(9, torch.tensor(
        q0, dtype=torch.float32)).double()
    after = clearance(out, c)
    assert after.min() >= w.obstacle_margin_m - 1e-9, after.min()
    assert not hard_violations(out, c, w.obstacle_margin_m).any()


def test_velocity_and_jerk_costs_are_zero_for_slow_smooth_chunks_and_positive_otherwise():
    c = ChunkConstraints(lower=torch.full((1,), -5.0), upper=torch.full((1,), 5.0), dt_s=0.1,
                         vmax=torch.tensor([1.0]))
    w = CostWeights(jerk=1.0)
    slow = torch.linspace(0, 0.5, 16, dtype=torch.float64)[None, :, None]
    fast = slow * 4.0                                                  # 1.33 rad/s > 1
    assert cost_terms(slow, c, w)['velocity'].item() == 0.0
    assert cost_terms(fast, c, w)['velocity'].item() > 0.0
    zigzag = slow + 0.05 * torch.tensor([(-1) ** i for i in range(16)])[None, :, None]
    assert cost_terms(zigzag, c, w)['jerk'].item() > 100 * cost_terms(slow, c, w)['jerk'].item()


@pytest.fixture(scope='module')
def tiny_policy(tmp_path_factory):
    from dp_policy.checkpoint import create_untrained_checkpoint
    from dp_policy.policy import DiffusionPolicy
    torch.set_num_threads(1)
    path = create_untrained_checkpoint(tmp_path_factory.mktemp('g') / 'tiny.ckpt', ['a', 'b', 'c'],
                                       preset='tiny', dt_s=0.1, action_min=-2.0, action_max=2.0)
    return DiffusionPolicy.from_checkpoint(path, backend='torch', num_samples=4)


def test_guided_policy_keeps_every_chunk_inside_narrow_limits_or_gates_it(tiny_policy):
    """A random network samples all over [-2, 2]; limits of +-0.6 rad: every published (not
    gated) chunk is inside them, and the assessment says why each sample was kept or not."""
    pol = tiny_policy
    lower, upper = torch.full((3,), -0.6), torch.full((3,), 0.6)
    pol.set_guidance(GuidanceConfig(final_iterations=40),
                     ChunkConstraints(lower=lower, upper=upper, dt_s=0.1))
    try:
        rng = np.random.default_rng(0)
        m = pol.meta
        for i in range(5):
            state = rng.uniform(-0.5, 0.5, (2, m.n_obs_steps, m.state_dim)).astype(np.float32)
            out = pol.predict(state, stamps=[0.1 * i, 0.1 * i], robot_ids=['r0', 'r1'])
            assert out.backend == 'torch+guidance' and out.assessment['cost'].shape == (2, 4)
            f = out.first_action_index
            for b in range(2):
                if out.gated[b]:
                    assert out.assessment['violates'][b].all() or \
                        out.assessment['ensemble_violates'][b, out.chosen[b]]
                    continue
                executed = out.actions[b, f:]
                assert np.all(executed >= -0.6 - 1e-9) and np.all(executed <= 0.6 + 1e-9)
                assert not out.assessment['violates'][b, out.chosen[b]]
        assert not out.gated.any()      # guidance brought every chunk inside: none needed gating
    finally:
        pol.set_guidance(None, None)
    assert pol.predict(np.zeros((1, pol.meta.n_obs_steps, 3), np.float32)).backend != 'torch+guidance'


def test_select_continues_the_chunk_in_execution_else_lowest_cost_and_gates_all_violating():
    from dp_policy.guidance.guide import select
    a = {'cost': np.array([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0], [2.0, 1.0, 0.5], [0.0, 1.0, 2.0]]),
         'violates': np.array([[False, False, False], [True, True, True],
                               [False, False, True], [True, False, False]])}
    coherence = np.array([[0.3, 0.1, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.3, 0.2]])
    chosen, gated = select(a, coherence, continues=np.array([True, True, False, True]))
    # 0: the most coherent (its higher cost does not count); 1: all violate (gated, lowest cost
    # reported); 2: nothing to continue: the lowest cost of the usable; 3: the most coherent of
    # the usable
    assert chosen.tolist() == [2, 0, 1, 2] and gated.tolist() == [False, True, False, False]
    # the chosen one's ensemble with the running chunks breaks the margin: gated, not replaced
    a['ensemble_violates'] = np.array([[False, False, True], [False] * 3, [True, False, False],
                                       [False, True, False]])
    chosen, gated = select(a, coherence, continues=np.array([True, True, False, True]))
    assert gated.tolist() == [True, True, False, False] and chosen.tolist() == [0, 0, 1, 2]


def test_a_sample_on_the_other_side_of_an_obstacle_is_gated_by_the_switch_to_it():
    """The chunk in execution passes a post on one side; a sample on the other side clears it
    along its own path, but the follower switching between the two would cross it: that sample
    violates, one on the same side does not."""
    from dp_policy.policy import transition_points
    post = Obstacle('cylinder', centre=(0.42, 0.0, 0.0), radius=0.02, size=(0, 0, 0.05))
    c = ChunkConstraints(lower=torch.full((3,), -3.0), upper=torch.full((3,), 3.0), dt_s=0.05,
                         kinematics=FK3, obstacles=[post])
    g = Guidance(GuidanceConfig(), c, np.zeros(3), np.ones(3), num_steps=10)

    def chunk(y):      # 16 wrist positions at y passing the post (two-link IK, last link along x)
        wx, wy = np.linspace(0.24, 0.38, 16), np.full(16, y)       # wrist (tip - 0.1 m along x)
        c2 = (wx ** 2 + wy ** 2 - 0.2 ** 2 - 0.16 ** 2) / (2 * 0.2 * 0.16)
        q2 = np.arccos(np.clip(c2, -1, 1))
        q1 = np.arctan2(wy, wx) - np.arctan2(0.16 * np.sin(q2), 0.2 + 0.16 * np.cos(q2))
        return np.stack([q1, q2, -q1 - q2], 1)

    left, right, left2 = chunk(0.06), chunk(-0.06), chunk(0.065)
    samples = np.stack([right, left2])[None]                               # (1, K=2, 16, 3)
    own = g.assess(samples, 1)
    assert not own['violates'].any()                  # each path clears the post by itself
    pts = transition_points(samples[0], 0.0, [(0.0, left)], 0.05, 1)
    both = g.assess(samples, 1, [pts])
    assert both['violates'][0].tolist() == [True, False]
    assert both['clearance_m'][0, 0] < 0 < both['clearance_m'][0, 1]
    assert not both['ensemble_violates'].any()        # one running chunk: no ensemble points
    switch, ensemble = transition_points(samples[0], 5.0, [(0.0, left)], 0.05, 1)
    assert switch.shape[1] == ensemble.shape[1] == 0                         # no overlap
    # three running chunks on the left, the sample on the right: its switch from the newest
    # crosses the post, and so does the mean of all four
    pts = transition_points(samples[0], 0.0, [(0.0, left), (0.0, left2), (0.0, left)], 0.05, 1)
    assert g.assess(samples, 1, [pts])['ensemble_violates'][0].tolist() == [True, False]


def test_transition_points_blend_the_newest_running_chunk_and_average_all_of_them():
    """Two running chunks (stamps 0 and 0.1 s, dt 0.1 s) and a sample stamped 0.2 s: the blends
    with the newest at the 3 weights on its overlap (indices 1..14 of the sample), and the mean
    of all three where both running chunks reach (indices 1..13)."""
    from dp_policy.policy import TRANSITION_WEIGHTS, transition_points
    T, A = 16, 2
    x, y = np.full((T, A), 1.0), np.full((T, A), 2.0)
    z = np.full((1, T, A), 6.0)
    switch, ensemble = transition_points(z, 0.2, [(0.0, x), (0.1, y)], 0.1, 1)
    blends = [np.full((14, A), (1 - w) * 2.0 + w * 6.0) for w in TRANSITION_WEIGHTS]
    np.testing.assert_allclose(switch[0], np.concatenate(blends))
    np.testing.assert_allclose(ensemble[0], np.full((13, A), 3.0))


def test_obstacle_strings_and_the_upright_cylinder():
    from dp_policy.guidance.setup import parse_obstacle
    cyl = parse_obstacle('cylinder 0.3 0 0.03 0.025 0.03')
    p = torch.tensor([[0.3, 0.1, 0.03], [0.3, 0.0, 0.1], [0.3, 0.0, 0.03]], dtype=torch.float64)
    np.testing.assert_allclose(cyl.distance(p).numpy(), [0.075, 0.04, -0.025], atol=1e-9)
    assert parse_obstacle('box 0 0 0 0.1 0.1 0.1 0 0 1.57').kind == 'box'
    assert parse_obstacle('sphere 1 2 3 0.5').radius == 0.5
    for bad in ('cone 1 2 3', 'sphere 1 2 3', 'box 0 0 0 a b c', ''):
        with pytest.raises(ValueError):
            parse_obstacle(bad)


def test_guidance_from_urdf_maps_the_chain_onto_the_policy_joints():
    from dp_policy.guidance.setup import guidance_from_urdf
    cfg, c, dims = guidance_from_urdf(URDF, 'tip', ['x', 'j2', 'j1'], 0.1,
                                      obstacles=['sphere 0.4 0.2 0 0.05'], obstacle_margin_m=0.02)
    assert dims == [2, 1] and cfg.weights.obstacle_margin_m == 0.02
    assert c.vmax.tolist() == [1.0, 1.0] and len(c.obstacles) == 1
    with pytest.raises(ValueError, match='not the policy'):
        guidance_from_urdf(URDF, 'tip', ['j1'], 0.1)


def test_the_stepwise_onnx_backend_equals_torch_and_carries_the_guide(tiny_policy):
    """OnnxStepBackend (encoder + one step exported, the loop in Python): without a guide the same
    samples as eager torch; with guidance the policy runs on it and its chunks obey the limits."""
    pytest.importorskip('onnxruntime')
    from dp_policy.policy import DiffusionPolicy
    from dp_policy.sampling.backends import OnnxStepBackend, TorchBackend
    pol = tiny_policy
    state, noise, images = pol._example(2)
    s1, n1, i1 = pol._example(1)
    steps = OnnxStepBackend(pol.sampler, (s1, n1, *i1), num_threads=1)
    torch.testing.assert_close(steps.run(state, noise, images),
                               TorchBackend(pol.sampler).run(state, noise, images),
                               atol=2e-4, rtol=1e-4)
    auto = DiffusionPolicy(pol.ckpt, backend='auto', num_samples=2)
    auto.set_guidance(GuidanceConfig(final_iterations=40), ChunkConstraints(
        lower=torch.full((3,), -1.0), upper=torch.full((3,), 1.0), dt_s=0.1))
    out = auto.predict(np.zeros((1, auto.meta.n_obs_steps, 3), np.float32))
    assert out.backend == 'onnxruntime-steps+guidance'
    f = out.first_action_index
    assert out.gated[0] or np.all(np.abs(out.actions[0, f:]) <= 1.0 + 1e-9)


def test_final_step_guidance_after_a_whole_loop_backend_equals_guiding_the_loop(tiny_policy):
    """steps = 1: the fastest backend samples the loop unguided and the final x0 is guided after
    it; the same arithmetic as guiding the loop's last step (the last x0 is the loop's output)."""
    from dp_policy.sampling.backends import TorchBackend
    pol = tiny_policy
    pol.set_guidance(GuidanceConfig(steps=1, final_iterations=40), ChunkConstraints(
        lower=torch.full((3,), -0.6), upper=torch.full((3,), 0.6), dt_s=0.1))
    try:
        assert pol.guidance.final_step_only
        state, noise, images = pol._example(2)
        out = pol.predict(state.numpy(), noise=noise.numpy())
        assert out.backend.endswith('+guidance') and not out.backend.startswith('onnxruntime-steps')
        pol.sampler.loop.guide = pol.guidance                     # the loop's own last step
        try:
            looped = TorchBackend(pol.sampler).run(state, noise, images)
        finally:
            pol.sampler.loop.guide = None
        expected = pol.ckpt.action_normalizer.unnormalize(looped.numpy().astype(np.float64))
        np.testing.assert_allclose(out.samples, expected, atol=1e-4)
        f = out.first_action_index
        assert all(out.gated[b] or np.all(np.abs(out.actions[b, f:]) <= 0.6 + 1e-9)
                   for b in range(2))
    finally:
        pol.set_guidance(None, None)


def planar_urdf(lengths=(0.2, 0.16, 0.1), width=0.03) -> str:
    """A planar arm like the embedded one: joints about z, a box link of each length."""
    links, joints, parent = ['<link name="base"/>', '<link name="tip"/>'], [], 'base'
    for i, length in enumerate(lengths):
        links.append(f'<link name="l{i}"><collision><origin xyz="{length / 2} 0 0"/><geometry>'
                     f'<box size="{length} {width} 0.02"/></geometry></collision></link>')
        offset = lengths[i - 1] if i else 0.0
        joints.append(f'<joint name="{"abc"[i]}" type="revolute"><parent link="{parent}"/>'
                      f'<child link="l{i}"/><origin xyz="{offset} 0 0"/><axis xyz="0 0 1"/>'
                      '<limit lower="-3" upper="3" effort="1" velocity="3"/></joint>')
        parent = f'l{i}'
    joints.append(f'<joint name="t" type="fixed"><parent link="{parent}"/><child link="tip"/>'
                  f'<origin xyz="{lengths[-1]} 0 0"/></joint>')
    return '<robot name="planar">' + ''.join(links + joints) + '</robot>'


PLANAR3 = planar_urdf()
FK3 = TorchKinematics.from_urdf(PLANAR3, tip='tip')
KEPT = []      # (chunks published, chunks) over the examples below


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.8, 2.0), st.floats(-0.8, 0.8),
       st.floats(0.2, 0.4), st.floats(-math.pi, math.pi), st.floats(0.02, 0.05))
def test_every_published_chunk_of_random_observations_obeys_random_limits_and_an_obstacle(
        tiny_policy, seed, width, centre, reach, bearing, radius):
    """The policy on random observations (a random network: its samples go anywhere in
    [-2, 2] rad), random reachable limits and a sphere obstacle where the arm can reach, guided
    as policy_node does by default (the final clean chunk after the whole loop): every chunk not
    gated is inside the limits and clear of the obstacle by the margin (FK distance), and
    guidance keeps most chunks (gating is the exception)."""
    pol = tiny_policy
    rng = np.random.default_rng(seed)
    lower = torch.tensor(centre - width / 2 + rng.uniform(-0.1, 0.1, 3))
    upper = lower + width
    obstacle = Obstacle('sphere', centre=(reach * math.cos(bearing), reach * math.sin(bearing),
                                          0.0), radius=radius)
    margin = 0.01
    pol.set_guidance(GuidanceConfig(steps=1, final_iterations=60, weights=CostWeights(
        obstacle_margin_m=margin)), ChunkConstraints(lower=lower, upper=upper, dt_s=0.1,
                                                     kinematics=FK3, obstacles=[obstacle]))
    try:
        m = pol.meta
        state = rng.uniform(lower.numpy(), upper.numpy(), (2, m.n_obs_steps, 3)).astype(np.float32)
        out = pol.predict(state)
        f = out.first_action_index
        for b in range(2):
            KEPT.append(not out.gated[b])
            if out.gated[b]:
                continue
            q = torch.tensor(out.actions[b, f:])[None]
            assert torch.all(q >= lower - 1e-9) and torch.all(q <= upper + 1e-9)
            assert float(clearance(q, pol.guidance.c).min()) >= margin - 1e-9
    finally:
        pol.set_guidance(None, None)


def test_guidance_kept_most_chunks_of_the_random_examples():
    if len(KEPT) < 10:
        pytest.skip('runs after the property test above')
    assert sum(KEPT) >= 0.6 * len(KEPT), KEPT


def test_obstacles_with_a_mesh_only_link_are_refused_limits_alone_are_not():
    """A URDF whose moving link has only a mesh collision (as ur_description's, franka_description's):
    guidance has no distance for it, so obstacles (given, or to come on a topic) are refused
    with the reason; guidance on the limits alone works."""
    from dp_policy.guidance.setup import guidance_from_urdf
    mesh = URDF.replace('<geometry><box size="0.3 0.02 0.02"/></geometry>',
                        '<geometry><mesh filename="package://x/l1.stl"/></geometry>')
    with pytest.raises(ValueError, match=r"\['l1'\] have mesh collision geometry"):
        guidance_from_urdf(mesh, 'tip', ['j1', 'j2'], 0.1, ['sphere 0.4 0 0 0.05'])
    with pytest.raises(ValueError, match='mesh collision geometry'):
        guidance_from_urdf(mesh, 'tip', ['j1', 'j2'], 0.1, obstacles_expected=True)
    _, constraints, _ = guidance_from_urdf(mesh, 'tip', ['j1', 'j2'], 0.1)
    assert constraints.obstacles == [] and constraints.lower.tolist() == [-3.0, -3.0]
