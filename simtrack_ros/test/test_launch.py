"""launch/tracker.launch.py: static checks that always run, and a build with the launch API."""
from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
from typing import Dict, List, Optional

import pytest
import yaml

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILE = PACKAGE_ROOT / 'launch' / 'tracker.launch.py'
CONFIG_FILE = PACKAGE_ROOT / 'config' / 'tracker.yaml'
SETUP_FILE = PACKAGE_ROOT / 'setup.py'
EXPECTED_ARGUMENTS = {'namespace', 'image_topic', 'params_file', 'weights', 'device',
                      'use_sim_time', 'log_level', 'compressed_input', 'demo'}
#: Parameters every ROS 2 node has, so the node's params file need not list them.
BUILTIN_PARAMETERS = {'use_sim_time'}
HAS_LAUNCH = all(importlib.util.find_spec(name) is not None for name in ('launch', 'launch_ros'))


def _tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _calls(tree: ast.AST, name: str) -> List[ast.Call]:
    """Return the calls of a function or class called ``name`` (plain or attribute)."""
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, 'attr', None)
            if called == name:
                calls.append(node)
    return calls


def _keyword(call: ast.Call, name: str) -> Optional[ast.expr]:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literal(node: ast.expr) -> object:
    """Value of a literal, or of a module-level constant such as ``PACKAGE``."""
    if isinstance(node, ast.Name):
        for statement in _tree().body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and getattr(statement.targets[0], 'id', None) == node.id):
                return ast.literal_eval(statement.value)
    return ast.literal_eval(node)


def _argument_defaults() -> Dict[str, object]:
    """Literal default of every declared launch argument (None where not a literal)."""
    defaults = {}
    for call in _calls(_tree(), 'DeclareLaunchArgument'):
        default = _keyword(call, 'default_value')
        defaults[call.args[0].value] = (default.value if isinstance(default, ast.Constant)
                                        else None)
    return defaults


def _tracker_node() -> ast.Call:
    nodes = [call for call in _calls(_tree(), 'Node')
             if _literal(_keyword(call, 'executable')) == 'tracker_node']
    assert len(nodes) == 1, 'exactly one tracker_node'
    return nodes[0]


def _config_parameters() -> dict:
    """Parameters the params file gives the node named simtrack (any namespace, or ``/**``)."""
    parameters: dict = {}
    for key, section in yaml.safe_load(CONFIG_FILE.read_text()).items():
        if key == '/**' or key.rsplit('/', 1)[-1] == 'simtrack':
            parameters.update(section['ros__parameters'])
    return parameters


def test_defines_generate_launch_description():
    functions = {n.name for n in _tree().body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions


def test_declares_every_argument_with_a_description():
    declared = {}
    for call in _calls(_tree(), 'DeclareLaunchArgument'):
        name = ast.literal_eval(call.args[0])
        description = _keyword(call, 'description')
        assert description is not None, f'{name}: no description'
        text = ast.literal_eval(description)
        assert isinstance(text, str) and len(text) > 10, f'{name}: description {text!r}'
        declared[name] = call
    assert set(declared) == EXPECTED_ARGUMENTS


def test_literal_defaults_are_among_the_choices():
    for call in _calls(_tree(), 'DeclareLaunchArgument'):
        choices, default = _keyword(call, 'choices'), _keyword(call, 'default_value')
        if choices is not None and isinstance(default, ast.Constant):
            assert default.value in _literal(choices), ast.literal_eval(call.args[0])


def test_tracker_node_matches_the_params_file():
    node = _tracker_node()
    assert _literal(_keyword(node, 'name')) == 'simtrack'
    assert _literal(_keyword(node, 'package')) == 'simtrack_ros'
    assert _config_parameters(), f'{CONFIG_FILE.name} has no parameters for the node simtrack'


def test_overridden_parameters_exist_in_the_params_file():
    parameters = _keyword(_tracker_node(), 'parameters')
    assert isinstance(parameters, ast.List)
    overrides = [ast.literal_eval(key) for item in parameters.elts
                 if isinstance(item, ast.Dict) for key in item.keys]
    assert overrides, 'no parameter overrides found'
    in_file = _config_parameters()
    defaults = _argument_defaults()
    for name in overrides:
        if name in BUILTIN_PARAMETERS:
            continue
        assert name in in_file, f'{name} is not a parameter in {CONFIG_FILE.name}'
        # The launch argument's default must not silently change the params file's default.
        file_value = in_file[name]
        if isinstance(file_value, bool):
            file_value = str(file_value).lower()
        assert defaults.get(name) == file_value, (name, defaults.get(name), file_value)


def test_executables_are_console_scripts():
    scripts = set(re.findall(r"'(\w+) = [\w.]+:\w+'", SETUP_FILE.read_text()))
    for call in _calls(_tree(), 'Node'):
        executable = _literal(_keyword(call, 'executable'))
        assert executable in scripts, f'{executable} is not a console script in setup.py'


@pytest.mark.skipif(not HAS_LAUNCH,
                    reason='launch is not installable from PyPI; runs on a ROS 2 install')
def test_builds_with_the_launch_api():
    from launch import LaunchDescription
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location('tracker_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    arguments = description.get_launch_arguments()
    assert {argument.name for argument in arguments} == EXPECTED_ARGUMENTS
    assert all(argument.description for argument in arguments)
    nodes = [entity for entity in description.entities if isinstance(entity, Node)]
    assert sorted(node.node_executable for node in nodes) == ['demo_camera', 'tracker_node']
    assert all(node.node_package == 'simtrack_ros' for node in nodes)
