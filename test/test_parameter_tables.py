"""Every node's parameter table (<package>/parameters/<node>.yaml): loads, typed defaults,
descriptions; the workspace's tests because the tables are in five packages."""
import pytest

from dp_common.params import load_parameter_table

TABLES = [('dp_controller', 'follower_node'), ('dp_policy_node', 'policy_node'),
          ('dp_sim', 'sim_node'), ('dp_sim', 'demonstrator_node'), ('dp_sim', 'recorder_node')]


@pytest.mark.parametrize('package,node', TABLES)
def test_every_node_table_loads_with_descriptions(package, node):
    table = load_parameter_table(package, node)
    assert len(table) >= 8
    for name, (default, description) in table.items():
        assert name.isidentifier(), name
        assert len(description) > 10, name
        assert default is None or isinstance(default, (bool, int, float, str, list)), name


def test_known_defaults_keep_their_types():
    follower = load_parameter_table('dp_controller', 'follower_node')
    assert follower['control_rate_hz'][0] == 500.0 and isinstance(follower['control_rate_hz'][0], float)
    assert follower['n_action_steps'][0] == 8 and isinstance(follower['n_action_steps'][0], int)
    assert follower['spin_wait_s'][0] == 0.0001
    assert follower['autostart'][0] is True
    assert follower['position_lower_rad'][0] == [-3.14]
    assert follower['jtc_stamp'][0] == 'zero'
    sim = load_parameter_table('dp_sim', 'sim_node')
    assert sim['jtc_interpolate_from_desired_state'][0] is None       # dynamically typed, unset
    assert sim['jtc_distro'][0] == 'jazzy'
    policy = load_parameter_table('dp_policy_node', 'policy_node')
    assert policy['robot_namespaces'][0] == ['']                         # one robot, no namespace
