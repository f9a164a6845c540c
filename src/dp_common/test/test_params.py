"""The nodes' parameter tables (<package>/parameters/<node>.yaml) and their declaration."""
import pytest

from dp_common.params import _read_table, load_parameter_table

TABLES = [('dp_controller', 'follower_node'), ('dp_policy_node', 'policy_node'),
          ('dp_sim', 'sim_node'), ('dp_sim', 'demonstrator_node'), ('dp_sim', 'recorder_node')]


@pytest.mark.parametrize('package,node', TABLES)
def test_every_node_table_loads_with_typed_defaults_and_descriptions(package, node):
    table = load_parameter_table(package, node)
    assert len(table) >= 8
    for name, (default, description) in table.items():
        assert name.isidentifier(), name
        assert len(description) > 10, name
        # YAML 1.1 reads 1e-4 as a string: a number written so would be declared as a string
        assert not (isinstance(default, str) and default.replace('.', '').replace('e-', '')
                    .replace('e', '').isdigit()), (name, default)
    # a fresh table each time: a node changing a list default does not change the next node's
    for name in [n for n, (d, _) in table.items() if isinstance(d, list)][:1]:
        table[name][0].append('x')
        assert load_parameter_table(package, node)[name][0] != table[name][0]


def test_known_defaults_keep_their_types():
    follower = load_parameter_table('dp_controller', 'follower_node')
    assert follower['control_rate_hz'][0] == 500.0 and isinstance(follower['control_rate_hz'][0], float)
    assert follower['n_action_steps'][0] == 8 and isinstance(follower['n_action_steps'][0], int)
    assert follower['spin_wait_s'][0] == 0.0001
    assert follower['autostart'][0] is True
    assert follower['position_lower_rad'][0] == [-3.14]
    sim = load_parameter_table('dp_sim', 'sim_node')
    assert sim['jtc_interpolate_from_desired_state'][0] is None       # dynamically typed, unset


def test_an_entry_without_a_description_is_refused(tmp_path, monkeypatch):
    import importlib.resources
    pkg = tmp_path / 'fake_pkg'
    (pkg / 'parameters').mkdir(parents=True)
    (pkg / '__init__.py').write_text('')
    (pkg / 'parameters' / 'n.yaml').write_text('rate_hz:\n  default: 1.0\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    _read_table.cache_clear()
    assert importlib.resources.files('fake_pkg')
    with pytest.raises(ValueError, match="'rate_hz' needs exactly a default and a description"):
        load_parameter_table('fake_pkg', 'n')


def test_declared_on_a_node_with_the_tables_types(ros_node):
    from dp_common.params import declare_parameters
    values = declare_parameters(ros_node.node, load_parameter_table('dp_sim', 'recorder_node'))
    assert values['topics'] == load_parameter_table('dp_sim', 'recorder_node')['topics'][0]
    assert ros_node.node.get_parameter('queue_depth').type_.name == 'INTEGER'
    assert ros_node.node.describe_parameter('storage').description.startswith('rosbag2 storage')
