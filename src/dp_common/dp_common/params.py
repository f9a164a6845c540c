"""Declaring a node's parameters from one table: name -> (default, description).

Every dp_ros node keeps its parameters in a YAML file of its package,
`<package>/parameters/<node>.yaml` (as ros2_controllers' generate_parameter_library does), one
entry a parameter:

    rate_hz:
      default: 50.0
      description: >-
        publishing rate (Hz)

read into such a table by `load_parameter_table` (so `ros2 param describe`, the config files'
comments and the READMEs say the same), and declares them with `declare_parameters`:

    PARAMETERS = load_parameter_table('dp_controller', 'follower_node')
    values = declare_parameters(node, PARAMETERS, dynamic=('max_velocity_rad_s',))

Types follow the defaults, as rclpy does, with three cases rclpy cannot infer: an empty list is a
string array; a default of None, and every name in `dynamic`, is dynamically typed (a number or a
list, an unset override). Returns the values after the overrides (launch, params files); None
for a string array left unset.
rclpy is imported inside the function: importing dp_common stays rclpy-free.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Collection, Mapping


@lru_cache(maxsize=None)
def _read_table(package: str, node: str) -> tuple[tuple[str, Any, str], ...]:
    import importlib.resources

    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses a name given twice (safe_load keeps the last silently)."""

        def construct_mapping(self, mapping_node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in mapping_node.value]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise ValueError(f'{resource}: {twice} given twice')
            return super().construct_mapping(mapping_node, deep=deep)

    resource = importlib.resources.files(package) / 'parameters' / f'{node}.yaml'
    entries = yaml.load(resource.read_text(encoding='utf-8'), Loader=Loader) or {}
    table = []
    for name, entry in entries.items():
        if not isinstance(entry, dict) or set(entry) != {'default', 'description'}:
            raise ValueError(f'{resource}: parameter {name!r} needs exactly a default and a '
                             f'description, got {entry!r}')
        _check_default(resource, name, entry['default'])
        table.append((name, entry['default'], str(entry['description'])))
    return tuple(table)


def _check_default(resource, name: str, default: Any) -> None:
    """YAML 1.1 reads 1e-4 as a string (a parameter declared a string): numbers are written with
    a point (0.0001), strings quoted."""
    for value in default if isinstance(default, list) else [default]:
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                continue
            raise ValueError(f'{resource}: default of {name!r} is the string {value!r}: write a '
                             'number with a point (0.0001, not 1e-4); a string that reads as a '
                             'number is not a parameter default here')


def load_parameter_table(package: str, node: str) -> dict[str, tuple[Any, str]]:
    """`<package>/parameters/<node>.yaml` as {name: (default, description)}, in file order (a
    fresh dict each call; list defaults are fresh lists)."""
    return {name: (list(default) if isinstance(default, list) else default, description)
            for name, default, description in _read_table(package, node)}


def declare_parameters(node, table: Mapping[str, tuple[Any, str]],
                       dynamic: Collection[str] = ()) -> dict[str, Any]:
    """Declare every parameter of `table` on `node`; returns {name: value}."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter

    for name, (default, description) in table.items():
        is_dynamic = default is None or name in dynamic
        desc = ParameterDescriptor(description=description, dynamic_typing=is_dynamic)
        if isinstance(default, (list, tuple)) and not default and not is_dynamic:
            node.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc)
        else:
            node.declare_parameter(name, default, desc)
    values = {}
    for name in table:
        try:
            values[name] = node.get_parameter(name).value
        except ParameterUninitializedException:   # an empty string array left unset
            values[name] = None
    return values


def resolve_path(path: str) -> str:
    """A file path, with package://<package>/<rest> resolved to the package's share folder
    (ValueError where the package is not installed)."""
    if not path.startswith('package://'):
        return path
    package, _, rest = path[len('package://'):].partition('/')
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        return os.path.join(get_package_share_directory(package), rest)
    except PackageNotFoundError:
        raise ValueError(f'{path}: package {package!r} is not installed') from None
