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


def _constant(name: str) -> ast.expr:
    """AST of the value assigned to the module-level constant ``name``."""
    for statement in _tree().body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and getattr(statement.targets[0], 'id', None) == name):
            return statement.value
    raise AssertionError(f'no module-level constant {name}')


def _optional_overrides() -> Dict[str, str]:
    """``OPTIONAL_OVERRIDES`` as parameter name -> type name (``str``, ``bool``, ...)."""
    mapping = _constant('OPTIONAL_OVERRIDES')
    assert isinstance(mapping, ast.Dict), 'OPTIONAL_OVERRIDES is not a dict literal'
    return {ast.literal_eval(key): value.id for key, value in zip(mapping.keys, mapping.values)}


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


def test_overrides_are_computed_in_an_opaque_function():
    functions = {n.name: n for n in _tree().body if isinstance(n, ast.FunctionDef)}
    opaque = _calls(_tree(), 'OpaqueFunction')
    assert len(opaque) == 1, 'the tracker node must come from one OpaqueFunction'
    function = _keyword(opaque[0], 'function')
    assert isinstance(function, ast.Name) and function.id in functions, (
        'OpaqueFunction(function=...) must name a module-level function')
    assert [a.arg for a in functions[function.id].args.args] == ['context']
    # The tracker node is built inside that function, so the overrides are evaluated there.
    tracker_line = _tracker_node().lineno
    assert any(call.lineno == tracker_line for call in _calls(functions[function.id], 'Node'))


def test_tracker_node_has_no_unconditional_optional_overrides():
    parameters = _keyword(_tracker_node(), 'parameters')
    assert isinstance(parameters, ast.List)
    optional = set(_optional_overrides())
    for item in parameters.elts:
        if isinstance(item, ast.Dict):
            keys = {ast.literal_eval(key) for key in item.keys}
            assert not keys & optional, f'always overridden: {sorted(keys & optional)}'


def test_optional_overrides_exist_in_the_params_file():
    overrides = _optional_overrides()
    assert overrides, 'no optional parameter overrides found'
    in_file = _config_parameters()
    for name, type_name in overrides.items():
        assert name not in BUILTIN_PARAMETERS, f'{name} is a launch-level convention'
        assert name in in_file, f'{name} is not a parameter in {CONFIG_FILE.name}'
        assert type(in_file[name]).__name__ == type_name, (name, in_file[name], type_name)


def test_optional_overrides_default_to_the_params_file():
    defaults = _argument_defaults()
    descriptions = {ast.literal_eval(call.args[0]): ast.literal_eval(_keyword(call, 'description'))
                    for call in _calls(_tree(), 'DeclareLaunchArgument')}
    for name in _optional_overrides():
        assert name in defaults, f'{name} is not a launch argument'
        # Empty means "not given": the params file's value stays.
        assert defaults[name] == '', (name, defaults[name])
        assert 'params_file' in descriptions[name], f'{name}: description omits params_file'


def test_always_applied_overrides_are_builtin_parameters():
    """Check that only launch-level conventions such as use_sim_time are always overridden."""
    function = next(n for n in _tree().body
                    if isinstance(n, ast.FunctionDef) and n.name == 'parameter_overrides')
    always = {ast.literal_eval(node.slice) for node in ast.walk(function)
              if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
              and isinstance(node.slice, ast.Constant)}
    assert always == BUILTIN_PARAMETERS


def test_executables_are_console_scripts():
    scripts = set(re.findall(r"'(\w+) = [\w.]+:\w+'", SETUP_FILE.read_text()))
    for call in _calls(_tree(), 'Node'):
        executable = _literal(_keyword(call, 'executable'))
        assert executable in scripts, f'{executable} is not a console script in setup.py'


@pytest.mark.skipif(not HAS_LAUNCH,
                    reason='launch is not installable from PyPI; runs on a ROS 2 install')
def test_builds_with_the_launch_api():
    from launch import LaunchContext, LaunchDescription
    from launch.actions import OpaqueFunction
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location('tracker_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    arguments = description.get_launch_arguments()
    assert {argument.name for argument in arguments} == EXPECTED_ARGUMENTS
    assert all(argument.description for argument in arguments)
    context = LaunchContext()
    # Given on the command line: params_file (skips the package lookup) and weights.
    context.launch_configurations.update({'params_file': str(CONFIG_FILE), 'weights': '/w.pth'})
    for argument in arguments:
        argument.execute(context)
    overrides = module.parameter_overrides(context)
    assert set(overrides) == {'weights', 'use_sim_time'}
    assert overrides['weights'].value == '/w.pth'
    context.launch_configurations['compressed_input'] = 'true'
    assert module.parameter_overrides(context)['compressed_input'].value is True
    opaque = [entity for entity in description.entities if isinstance(entity, OpaqueFunction)]
    assert len(opaque) == 1
    nodes = [entity for entity in description.entities if isinstance(entity, Node)]
    nodes += opaque[0].execute(context)
    assert sorted(node.node_executable for node in nodes) == ['demo_camera', 'tracker_node']
    assert all(node.node_package == 'simtrack_ros' for node in nodes)
