"""dp_common.params: reading a parameter table and declaring it (the nodes' own tables are
checked in test/test_parameter_tables.py, where their packages are)."""
import pytest

from dp_common.params import _read_table, load_parameter_table


def _fake_package(tmp_path, monkeypatch, text: str, name: str = 'fake_pkg') -> str:
    pkg = tmp_path / name
    (pkg / 'parameters').mkdir(parents=True)
    (pkg / '__init__.py').write_text('')
    (pkg / 'parameters' / 'n.yaml').write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    _read_table.cache_clear()
    return name


def test_a_table_in_file_order_with_fresh_list_defaults(tmp_path, monkeypatch):
    pkg = _fake_package(tmp_path, monkeypatch, 'rate_hz:\n  default: 2.0\n  description: r\n'
                        'names:\n  default: ["a", "b"]\n  description: n\n'
                        'unset:\n  default: null\n  description: u\n')
    table = load_parameter_table(pkg, 'n')
    assert list(table) == ['rate_hz', 'names', 'unset']
    assert table['rate_hz'] == (2.0, 'r') and table['unset'] == (None, 'u')
    table['names'][0].append('c')            # a node changing its list does not change the next
    assert load_parameter_table(pkg, 'n')['names'][0] == ['a', 'b']


@pytest.mark.parametrize('text,match', [
    ('rate_hz:\n  default: 1.0\n', "'rate_hz' needs exactly a default and a description"),
    ('wait_s:\n  default: 1e-4\n  description: w\n', "write a number with a point"),
    ('a:\n  default: 1\n  description: x\na:\n  default: 2\n  description: y\n',
     r"\['a'\] given twice"),
])
def test_a_bad_table_is_refused(tmp_path, monkeypatch, text, match):
    pkg = _fake_package(tmp_path, monkeypatch, text, name=f'fake_{abs(hash(text)) % 10**8}')
    with pytest.raises(ValueError, match=match):
        load_parameter_table(pkg, 'n')


def test_declared_on_a_node_with_the_tables_types(ros_node):
    from dp_common.params import declare_parameters
    table = {'queue_depth': (20000, 'subscription depth'), 'topics': ([], 'topics to record'),
             'limits': ([1.0], 'per joint'), 'unset': (None, 'dynamically typed, unset')}
    values = declare_parameters(ros_node.node, table, dynamic=('limits',))
    assert values == {'queue_depth': 20000, 'topics': None, 'limits': [1.0], 'unset': None}
    assert ros_node.node.get_parameter('queue_depth').type_.name == 'INTEGER'
    assert ros_node.node.describe_parameter('topics').description == 'topics to record'
    assert ros_node.node.describe_parameter('limits').dynamic_typing
