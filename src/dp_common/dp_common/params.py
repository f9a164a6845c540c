"""Declaring a node's parameters from one table: name -> (default, description).

Every dp_ros node keeps its parameters in such a table (so `ros2 param describe` and the config
files' comments say the same) and declares them with `declare_parameters`:

    PARAMS = {'rate_hz': (50.0, 'publishing rate (Hz)'), 'topics': ([], 'topics to record')}
    values = declare_parameters(node, PARAMS, dynamic=('limits',))

Types follow the defaults, as rclpy does, with three cases rclpy cannot infer: an empty list is a
string array; a default of None, and every name in `dynamic`, is dynamically typed (a number or a
list, an unset override). Returns the values after the overrides (launch, params files); None
for a string array left unset.
rclpy is imported inside the function: importing dp_common stays rclpy-free.
"""
from __future__ import annotations

from typing import Any, Collection, Mapping


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
