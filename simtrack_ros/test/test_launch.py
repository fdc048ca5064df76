"""launch/tracker.launch.py: the nodes it starts and the parameters they get.

Where ``launch`` and ``launch_ros`` are importable (a ROS 2 install) the description is evaluated
through the launch API for several command lines: which nodes would start, with which names,
namespaces, remappings, log level and parameters (read back from the files launch passes to the
node). ``launch`` is not on PyPI, so elsewhere the file is parsed: the arguments it declares, the
executables it starts (console scripts of setup.py, installed in the package's prefix), the
parameters it can pass (those of config/tracker.yaml, with their types) and its default
parameter file (installed in the package's share directory).
"""
from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
import subprocess
import sys
from typing import Dict, List, NamedTuple

from ament_index_python.packages import get_package_prefix, get_package_share_directory
import pytest
import yaml

from simtrack_ros.ros import demo_settings

PACKAGE = 'simtrack_ros'
PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILE = PACKAGE_ROOT / 'launch' / 'tracker.launch.py'
CONFIG_FILE = PACKAGE_ROOT / 'config' / 'tracker.yaml'
SETUP_FILE = PACKAGE_ROOT / 'setup.py'
EXPECTED_ARGUMENTS = {'namespace', 'image_topic', 'params_file', 'weights', 'device',
                      'runtime', 'precision', 'use_sim_time', 'log_level', 'compressed_input',
                      'demo', 'search_factor'}
#: Parameters every ROS 2 node has, so the node's params file need not list them.
BUILTIN_PARAMETERS = {'use_sim_time': False}


def _has_launch_api() -> bool:
    try:
        import launch_ros.actions  # noqa: F401
    except ImportError:  # also a bare namespace package `launch` (a package's launch/ folder)
        return False
    return True


requires_launch = pytest.mark.skipif(
    not _has_launch_api(), reason='launch and launch_ros are not on PyPI: run on a ROS 2 install')


def _applies_to(key: str, node: str) -> bool:
    """Tell whether the params-file section ``key`` (``/**/simtrack``, ...) targets ``node``."""
    pattern = re.escape(key if key.startswith('/') else '/' + key)
    pattern = pattern.replace(r'/\*\*', '(/[^/]+)*').replace(r'\*', '[^/]+')
    return re.fullmatch(pattern, node) is not None


def _file_parameters(path: pathlib.Path, node: str) -> dict:
    """Return the parameters that the params file ``path`` gives the node named ``node``."""
    parameters: dict = {}
    for key, section in (yaml.safe_load(path.read_text()) or {}).items():
        if _applies_to(key, node):
            parameters.update(section['ros__parameters'])
    return parameters


def _console_scripts() -> Dict[str, str]:
    """Return console script name -> entry point, from setup.py's ``entry_points``."""
    setup = next(node for node in ast.walk(ast.parse(SETUP_FILE.read_text()))
                 if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'setup')
    entry_points = ast.literal_eval(next(k.value for k in setup.keywords
                                         if k.arg == 'entry_points'))
    return dict(line.replace(' ', '').split('=', 1) for line in entry_points['console_scripts'])


class _Parsed:
    """What the launch file declares, read from its syntax tree (no launch import)."""

    def __init__(self) -> None:
        self.tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
        self.constants = {
            statement.targets[0].id: statement.value for statement in self.tree.body
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name)}

    def calls(self, name: str) -> List[ast.Call]:
        return [node for node in ast.walk(self.tree) if isinstance(node, ast.Call)
                and name in (getattr(node.func, 'id', None), getattr(node.func, 'attr', None))]

    def value(self, node: ast.expr) -> object:
        """Return a literal, or a module-level constant's literal (``PACKAGE``, ``BOOLEAN``)."""
        if isinstance(node, ast.Name) and node.id in self.constants:
            node = self.constants[node.id]
        return ast.literal_eval(node)

    def arguments(self) -> Dict[str, Dict[str, ast.expr]]:
        """Return declared launch argument name -> its keyword arguments."""
        return {self.value(call.args[0]): {k.arg: k.value for k in call.keywords}
                for call in self.calls('DeclareLaunchArgument')}

    def nodes(self) -> List[Dict[str, ast.expr]]:
        return [{k.arg: k.value for k in call.keywords} for call in self.calls('Node')]

    def optional_overrides(self) -> Dict[str, str]:
        """Return ``OPTIONAL_OVERRIDES``: parameter name -> type name."""
        mapping = self.constants['OPTIONAL_OVERRIDES']
        return {ast.literal_eval(k): v.id for k, v in zip(mapping.keys, mapping.values)}

    def assigned_parameter_names(self) -> set:
        """Return string keys stored into a mapping (``overrides['use_sim_time'] = ...``)."""
        return {node.slice.value for node in ast.walk(self.tree)
                if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
                and isinstance(node.slice, ast.Constant)}


def test_declares_documented_arguments_with_valid_defaults():
    parsed = _Parsed()
    arguments = parsed.arguments()
    assert set(arguments) == EXPECTED_ARGUMENTS
    for name, keywords in arguments.items():
        description = parsed.value(keywords['description'])
        assert isinstance(description, str) and len(description) > 10, name
        default = keywords.get('default_value')
        if 'choices' in keywords and isinstance(default, ast.Constant):
            assert default.value in parsed.value(keywords['choices']), name


def test_starts_console_scripts_installed_in_the_package_prefix():
    parsed = _Parsed()
    scripts = _console_scripts()
    executables = {parsed.value(node['executable']) for node in parsed.nodes()}
    assert executables == {'tracker_node', 'demo_camera'}
    lib = pathlib.Path(get_package_prefix(PACKAGE)) / 'lib' / PACKAGE
    for node in parsed.nodes():
        assert parsed.value(node['package']) == PACKAGE
        executable = parsed.value(node['executable'])
        assert executable in scripts, f'{executable} is not a console script of setup.py'
        assert (lib / executable).is_file(), f'{executable} is not installed in {lib}'


def test_default_params_file_is_installed_and_configures_the_tracker():
    parsed = _Parsed()
    default = parsed.arguments()['params_file']['default_value']
    assert default.func.id == 'default_params_file'
    join, = parsed.calls('PathJoinSubstitution')    # the one default_params_file returns
    share, *parts = join.args[0].elts  # PathJoinSubstitution([FindPackageShare(...), ...])
    assert share.func.id == 'FindPackageShare' and parsed.value(share.args[0]) == PACKAGE
    installed = pathlib.Path(get_package_share_directory(PACKAGE), *map(parsed.value, parts))
    assert installed.read_text() == CONFIG_FILE.read_text()
    tracker = next(node for node in parsed.nodes()
                   if parsed.value(node['executable']) == 'tracker_node')
    assert _file_parameters(installed, '/' + parsed.value(tracker['name']))['autostart'] is True


def test_passes_only_parameters_of_the_node_with_their_types():
    parsed = _Parsed()
    in_file = {**BUILTIN_PARAMETERS, **_file_parameters(CONFIG_FILE, '/simtrack')}
    overrides = parsed.optional_overrides()
    passed = set(overrides) | parsed.assigned_parameter_names()
    assert passed - set(overrides) == set(BUILTIN_PARAMETERS), 'always-applied overrides'
    assert passed <= set(in_file), f'not parameters of the node: {passed - set(in_file)}'
    arguments = parsed.arguments()
    for name, type_name in overrides.items():
        assert type(in_file[name]).__name__ == type_name, (name, in_file[name], type_name)
        # An empty default means "not given": the params file's value stays.
        assert parsed.value(arguments[name]['default_value']) == '', name
        assert 'params_file' in parsed.value(arguments[name]['description']), name


class _Started(NamedTuple):
    """A node the launch description would start, with its resolved command line."""

    executable: str
    name: str
    remappings: Dict[str, str]
    log_level: str
    parameter_files: List[pathlib.Path]
    parameters: dict


def _launch(arguments: Dict[str, str]) -> Dict[str, _Started]:
    """Evaluate the launch file for a command line: executable -> the node it would start."""
    from launch import LaunchContext
    from launch.actions import OpaqueFunction
    from launch.substitutions import LocalSubstitution
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location('tracker_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    for argument in description.get_launch_arguments():
        argument.execute(context)  # applies the default where not given, checks the choices
    actions = []
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            actions += entity.execute(context) or []
        else:
            actions.append(entity)
    started = {}
    for node in actions:
        if not isinstance(node, Node) or not (node.condition is None
                                              or node.condition.evaluate(context)):
            continue
        assert node.node_package == PACKAGE
        node._perform_substitutions(context)  # what Node.execute does before starting it
        # The command line, less the name/namespace placeholders filled in at execution.
        command = [perform_substitutions(context, part) for part in node.cmd
                   if not any(isinstance(s, LocalSubstitution) for s in part)]
        files = [pathlib.Path(value) for flag, value in zip(command, command[1:])
                 if flag == '--params-file']
        parameters: dict = {}
        for path in files:
            parameters.update(_file_parameters(path, node.node_name))
        started[node.node_executable] = _Started(
            executable=command[0], name=node.node_name,
            remappings=dict(node.expanded_remapping_rules or []),
            log_level=command[command.index('--log-level') + 1],
            parameter_files=files, parameters=parameters)
    return started


@requires_launch
def test_launch_defaults_start_the_tracker_with_the_installed_params_file():
    started = _launch({})
    assert set(started) == {'tracker_node'}
    tracker = started['tracker_node']
    prefix = pathlib.Path(get_package_prefix(PACKAGE))
    assert pathlib.Path(tracker.executable) == prefix / 'lib' / PACKAGE / 'tracker_node'
    assert tracker.name == '/simtrack'
    assert tracker.parameter_files[0] == pathlib.Path(
        get_package_share_directory(PACKAGE), 'config', 'tracker.yaml')
    assert tracker.parameters == {**_file_parameters(CONFIG_FILE, '/simtrack'),
                                  'use_sim_time': False}
    assert tracker.remappings == {'image': 'image', 'image/compressed': 'image/compressed'}
    assert tracker.log_level == 'simtrack:=info'         # the node's logger, not rcl's


@requires_launch
def test_launch_arguments_reach_the_nodes(tmp_path: pathlib.Path):
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump(
        {'/**': {'ros__parameters': {'weights': '/file.pth', 'max_targets': 3}}}))
    started = _launch({'demo': 'true', 'namespace': 'boat', 'image_topic': '/bow/image',
                       'params_file': str(params), 'weights': '/given.pth', 'device': 'cpu',
                       'compressed_input': 'false', 'use_sim_time': 'true',
                       'log_level': 'debug'})
    assert set(started) == {'tracker_node', 'demo_camera'}
    tracker, camera = started['tracker_node'], started['demo_camera']
    assert (tracker.name, camera.name) == ('/boat/simtrack', '/boat/demo_camera')
    assert tracker.parameter_files[0] == params
    # Given arguments override the file, with the parameter's type; the rest is the file's.
    assert tracker.parameters == {'weights': '/given.pth', 'max_targets': 3, 'device': 'cpu',
                                  'compressed_input': False, 'use_sim_time': True}
    assert tracker.remappings == {'image': '/bow/image',
                                  'image/compressed': '/bow/image/compressed'}
    assert camera.remappings == {'image': '/bow/image'}
    assert (tracker.log_level, camera.log_level) == ('boat.simtrack:=debug',
                                                     'boat.demo_camera:=debug')


@requires_launch
def test_launch_rejects_an_invalid_choice():
    with pytest.raises(RuntimeError, match='"device"'):
        _launch({'device': 'gpu'})


@requires_launch
def test_compressed_input_given_overrides_the_params_file():
    tracker = _launch({'compressed_input': 'true'})['tracker_node']
    assert tracker.parameters['compressed_input'] is True


@requires_launch
def test_search_factor_given_overrides_the_params_file_as_a_float():
    tracker = _launch({'search_factor': '3.0', 'demo': 'true'})['tracker_node']
    assert tracker.parameters['search_factor'] == 3.0
    assert _launch({})['tracker_node'].parameters['search_factor'] == 4.0   # the params file


@requires_launch
def test_demo_runs_the_demo_weights_at_their_tuned_search_factor(tmp_path: pathlib.Path):
    factor = _launch({'demo': 'true'})['tracker_node'].parameters['search_factor']
    assert factor == demo_settings.DEMO_SEARCH_FACTOR
    # Given arguments win: an explicit factor, or other weights (the params file's factor).
    assert _launch({'demo': 'true', 'search_factor': '5.0'})[
        'tracker_node'].parameters['search_factor'] == 5.0
    assert _launch({'demo': 'true', 'weights': '/given.pth'})[
        'tracker_node'].parameters['search_factor'] == 4.0
    # A params file of one's own keeps its factor.
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'search_factor': 4.5}}}))
    assert _launch({'demo': 'true', 'params_file': str(params)})[
        'tracker_node'].parameters['search_factor'] == 4.5


def test_demo_search_factor_only_for_the_demo_weights_and_an_unset_factor():
    tuned = demo_settings.DEMO_SEARCH_FACTOR
    assert demo_settings.demo_search_factor(True, '', '', False) == tuned
    assert demo_settings.demo_search_factor(False, '', '', False) is None
    assert demo_settings.demo_search_factor(True, '/given.pth', '', False) is None
    assert demo_settings.demo_search_factor(True, '', '5.0', False) is None
    assert demo_settings.demo_search_factor(True, '', '', True) is None


def test_the_launch_file_applies_the_demo_search_factor_from_a_light_module():
    assert _Parsed().calls('demo_search_factor'), 'the launch file no longer sets it'
    # ros2 launch imports it while it parses the file: no torch, no rclpy.
    check = ('import sys, simtrack_ros.ros.demo_settings; '
             "print(sorted({'torch', 'rclpy'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == '[]', result.stdout
