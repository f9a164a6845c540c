"""The URDF (Gazebo / ros2_control) and the MJCF (embedded sim) describe the same arm."""
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

PKG = Path(__file__).resolve().parents[1]
URDF = PKG / 'description' / 'arm.urdf'
MJCF = PKG / 'description' / 'arm.mjcf.xml'
JOINTS = ['joint1', 'joint2', 'joint3']


def vec(text, default='0 0 0'):
    return np.array([float(v) for v in (text or default).split()])


@pytest.fixture(scope='module')
def urdf():
    return ET.parse(URDF).getroot()


@pytest.fixture(scope='module')
def mjcf():
    return ET.parse(MJCF).getroot()


def test_urdf_revolute_joints(urdf):
    names = [j.get('name') for j in urdf.findall('joint') if j.get('type') == 'revolute']
    assert names == JOINTS
    for j in urdf.findall('joint'):
        if j.get('type') == 'revolute':
            lim = j.find('limit')
            assert float(lim.get('lower')) < 0 < float(lim.get('upper'))
            assert float(lim.get('velocity')) > 0 and float(lim.get('effort')) > 0
            assert np.allclose(vec(j.find('axis').get('xyz')), [0, 0, 1])


def test_urdf_links_have_inertias(urdf):
    for link in urdf.findall('link'):
        if link.get('name') in ('link1', 'link2', 'link3', 'base_link', 'camera_link'):
            inertial = link.find('inertial')
            assert inertial is not None, link.get('name')
            assert float(inertial.find('mass').get('value')) > 0
            ine = inertial.find('inertia')
            assert all(float(ine.get(k)) > 0 for k in ('ixx', 'iyy', 'izz'))
    assert urdf.find("link[@name='camera_link']") is not None


def test_ros2_control_block(urdf):
    rc = urdf.find('ros2_control')
    assert rc is not None and rc.get('type') == 'system'
    assert rc.find('hardware/plugin').text.strip() == 'gz_ros2_control/GazeboSimSystem'
    joints = rc.findall('joint')
    assert [j.get('name') for j in joints] == JOINTS
    for j in joints:
        assert [c.get('name') for c in j.findall('command_interface')] == ['position']
        assert [s.get('name') for s in j.findall('state_interface')] == ['position', 'velocity']
    plugin = urdf.find('gazebo/plugin')
    assert plugin.get('filename') == 'gz_ros2_control-system'
    params = plugin.find('parameters').text
    assert params.endswith('config/controllers.yaml')
    assert (PKG / 'config' / 'controllers.yaml').exists()


def test_controllers_yaml_names_the_ros2_control_interfaces():
    text = (PKG / 'config' / 'controllers.yaml').read_text()
    for needle in ('joint_state_broadcaster/JointStateBroadcaster',
                   'forward_command_controller/ForwardCommandController',
                   'joint_trajectory_controller/JointTrajectoryController',
                   'joints: [joint1, joint2, joint3]', 'interface_name: position'):
        assert needle in text


ARMS = [('arm.urdf', 'arm.mjcf.xml', JOINTS, 'link3_to_tool0'),
        ('arm4.urdf', 'arm4.mjcf.xml', JOINTS + ['joint4'], 'link4_to_tool0')]


@pytest.mark.parametrize('urdf_file,mjcf_file,joints,tool_joint', ARMS)
def test_mjcf_matches_urdf(urdf_file, mjcf_file, joints, tool_joint):
    """Both embedded arms: the MJCF the simulation runs is the URDF the nodes read."""
    urdf = ET.parse(PKG / 'description' / urdf_file).getroot()
    mjcf = ET.parse(PKG / 'description' / mjcf_file).getroot()
    ujoints = {j.get('name'): j for j in urdf.findall('joint')}
    mjoints = {j.get('name'): j for j in mjcf.iter('joint')}
    assert sorted(mjoints) == joints
    actuators = {a.get('joint'): a for a in mjcf.find('actuator')}
    assert [a.get('joint') for a in mjcf.find('actuator')] == joints   # the command order
    for name in joints:
        uj, mj = ujoints[name], mjoints[name]
        lim = uj.find('limit')
        lo, hi = float(lim.get('lower')), float(lim.get('upper'))
        assert np.allclose(vec(mj.get('range')), [lo, hi]), name
        assert np.allclose(vec(mj.get('axis')), vec(uj.find('axis').get('xyz'))), name
        act = actuators[name]
        assert np.allclose(vec(act.get('ctrlrange')), [lo, hi]), name
        assert np.allclose(vec(act.get('forcerange')), [-float(lim.get('effort')), float(lim.get('effort'))])
        assert float(mj.get('damping')) == pytest.approx(float(uj.find('dynamics').get('damping')))
    # Link lengths: each joint's origin in its parent = the MJCF body offset holding that joint.
    bodies = {b.get('name'): b for b in mjcf.iter('body')}
    for name in joints:
        child = ujoints[name].find('child').get('link')
        uorig = vec(ujoints[name].find('origin').get('xyz'))
        assert np.allclose(vec(bodies[child].get('pos')), uorig), name
    # Tool point (stylus tip).
    tool = vec(ujoints[tool_joint].find('origin').get('xyz'))
    site = next(s for s in mjcf.iter('site') if s.get('name') == 'tool0')
    assert np.allclose(vec(site.get('pos')), tool)
    # Masses.
    for link in [f'link{i + 1}' for i in range(len(joints))]:
        umass = float(urdf.find(f"link[@name='{link}']/inertial/mass").get('value'))
        assert float(bodies[link].find('inertial').get('mass')) == pytest.approx(umass)


def test_env_link_lengths_match_urdf(urdf):
    from dp_sim.env import ArmTaskEnv
    from dp_sim.expert import LINK_LENGTHS_M
    ujoints = {j.get('name'): j for j in urdf.findall('joint')}
    lengths = (vec(ujoints['joint2'].find('origin').get('xyz'))[0],
               vec(ujoints['joint3'].find('origin').get('xyz'))[0],
               vec(ujoints['link3_to_tool0'].find('origin').get('xyz'))[0])
    assert np.allclose(lengths, LINK_LENGTHS_M)
    env = ArmTaskEnv(seed=0)
    assert np.allclose(lengths, env.link_lengths_m)
    # And the physics agrees: the simulated tip is the planar FK with those lengths.
    env.set_position_targets([0.3, -0.5, 0.4])
    env.step(1.0)
    assert np.allclose(env.tip[:2], env.forward_kinematics(env.q), atol=1e-6)
