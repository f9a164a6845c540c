"""`dp_launch`: the nodes of a dp_bringup launch file (graphs.py) started as separate processes
(starter.py), without launch_ros."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from dp_bringup import graphs
from dp_bringup.starter import ProcessGroup


def parse_assignments(items: list[str], what: str = 'launch arguments') -> dict[str, str]:
    """`name:=value` pairs, as `ros2 launch` takes them (the value may hold ':=' itself)."""
    out = {}
    for item in items:
        if ':=' not in item:
            raise SystemExit(f'{what} are name:=value, got {item!r}')
        key, value = item.split(':=', 1)
        out[key] = value
    return out


def parse_launch_args(items: list[str]) -> dict[str, str]:
    return parse_assignments(items, 'launch arguments')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='dp_launch',
        description='Start the nodes of a dp_bringup launch file as separate processes, without '
                    'launch_ros. Same executables and parameter files as `ros2 launch dp_bringup '
                    'FILE`.',
        epilog='launch files: ' + ', '.join(sorted(graphs.GRAPHS)) +
               '. Use `dp_launch FILE --show-args` to list the arguments of a file.')
    parser.add_argument('launch_file', choices=sorted(graphs.GRAPHS))
    parser.add_argument('args', nargs='*', help='launch arguments, name:=value')
    parser.add_argument('--show-args', action='store_true', help='list arguments and exit')
    parser.add_argument('--print', action='store_true', help='print the commands and exit')
    parser.add_argument('--duration', type=float, default=None,
                        help='stop everything after this many seconds')
    parser.add_argument('--log-dir', default=None, help='also write each node output to a file')
    ns = parser.parse_args(argv)
    graph = graphs.GRAPHS[ns.launch_file]
    if ns.show_args:
        for arg in graph.arguments:
            print(f'{arg.name}:={arg.default!s:<24} {arg.description}')
        return 0
    specs = graph.build(parse_launch_args(ns.args))
    if ns.print:
        for spec in specs:
            print(' '.join(spec.command()))
        return 0
    group = ProcessGroup(specs, log_dir=ns.log_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        group.start()
        end = None if ns.duration is None else time.monotonic() + ns.duration
        while not stop.is_set() and (end is None or time.monotonic() < end):
            dead = group.dead_required()
            if dead:
                print(f'[dp_launch] required process {dead[0]} exited: stopping', flush=True)
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    codes = group.stop()
    bad = {k: v for k, v in codes.items() if v not in (0, -signal.SIGINT)}
    if bad:
        print(f'[dp_launch] exit codes: {bad}', flush=True)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
