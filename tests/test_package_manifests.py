"""package.xml files parse and declare exactly what the code imports."""
from __future__ import annotations

import ast
import pathlib
import re
from typing import Set

from catkin_pkg.package import parse_package
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / 'simtrack_ros'
INTERFACES_DIR = REPO / 'simtrack_ros_interfaces'

#: Python import name -> rosdep key, for imports that are not ROS packages of the same name.
ROSDEP_KEYS = {'numpy': 'python3-numpy', 'cv2': 'python3-opencv', 'torch': 'python3-torch',
               'tqdm': 'python3-tqdm',
               'launch': 'launch', 'launch_ros': 'launch_ros'}
#: Test-only imports -> rosdep key.
TEST_ROSDEP_KEYS = {'pytest': 'python3-pytest', 'yaml': 'python3-yaml',
                    'catkin_pkg': 'python3-catkin-pkg'}
ROS_PACKAGES = {'rclpy', 'sensor_msgs', 'std_msgs', 'vision_msgs', 'diagnostic_msgs',
                'lifecycle_msgs', 'builtin_interfaces', 'simtrack_ros_interfaces', 'cv_bridge',
                'ament_index_python', 'rcl_interfaces', 'geometry_msgs'}
#: Run, not imported: test_flake8 runs ``python -m flake8``.
RUN_BY_TESTS = {'python3-flake8'}


def _imported_top_level(paths) -> Set[str]:
    names: Set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split('.')[0])
    return names


def _dependencies(package) -> Set[str]:
    return {d.name for d in package.build_depends + package.exec_depends
            + package.build_export_depends + package.buildtool_depends + package.test_depends}


def _package_code():
    return list((PACKAGE_DIR / 'simtrack_ros').rglob('*.py')) + list(
        (PACKAGE_DIR / 'launch').glob('*.py'))


def _package_tests():
    return list((PACKAGE_DIR / 'test').glob('*.py'))


@pytest.mark.parametrize('directory', [PACKAGE_DIR, INTERFACES_DIR])
def test_package_xml_parses(directory):
    package = parse_package(str(directory / 'package.xml'))
    package.validate()
    assert package.package_format == 3
    assert package.name == directory.name


def test_python_package_declares_every_import():
    package = parse_package(str(PACKAGE_DIR / 'package.xml'))
    imported = _imported_top_level(_package_code())
    needed = {ROSDEP_KEYS[name] for name in imported if name in ROSDEP_KEYS}
    needed |= imported & ROS_PACKAGES
    missing = needed - _dependencies(package)
    assert not missing, f'package.xml lacks dependencies {sorted(missing)}'
    assert package.get_build_type() == 'ament_python'


def test_python_package_declares_test_imports():
    package = parse_package(str(PACKAGE_DIR / 'package.xml'))
    imported = _imported_top_level(_package_tests())
    keys = dict(ROSDEP_KEYS, **TEST_ROSDEP_KEYS)
    needed = {keys[name] for name in imported if name in keys} | (imported & ROS_PACKAGES)
    missing = (needed | RUN_BY_TESTS) - _dependencies(package)
    assert not missing, f'package.xml lacks test dependencies {sorted(missing)}'


def test_python_package_declares_nothing_unused():
    package = parse_package(str(PACKAGE_DIR / 'package.xml'))
    imported = _imported_top_level(_package_code() + _package_tests())
    keys = dict(ROSDEP_KEYS, **TEST_ROSDEP_KEYS)
    used = imported | {keys[name] for name in imported if name in keys} | RUN_BY_TESTS
    unused = _dependencies(package) - used
    assert not unused, f'package.xml declares dependencies nothing uses: {sorted(unused)}'


def test_interfaces_declare_referenced_message_packages():
    package = parse_package(str(INTERFACES_DIR / 'package.xml'))
    referenced: Set[str] = set()
    for path in list((INTERFACES_DIR / 'msg').glob('*.msg')) + list(
            (INTERFACES_DIR / 'srv').glob('*.srv')):
        referenced.update(re.findall(r'^\s*(\w+)/\w+', path.read_text(), flags=re.M))
    assert referenced, 'no message dependencies found'
    assert referenced <= _dependencies(package), referenced - _dependencies(package)
    assert 'rosidl_interface_packages' in [g.name for g in package.member_of_groups]
    cmake = (INTERFACES_DIR / 'CMakeLists.txt').read_text()
    for path in [*(INTERFACES_DIR / 'msg').iterdir(), *(INTERFACES_DIR / 'srv').iterdir()]:
        assert f'"{path.parent.name}/{path.name}"' in cmake, f'{path.name} not generated'


def test_interface_fields_are_commented():
    for path in list((INTERFACES_DIR / 'msg').glob('*.msg')) + list(
            (INTERFACES_DIR / 'srv').glob('*.srv')):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if line.strip() and not line.startswith('#') and line.strip() != '---':
                assert index > 0 and lines[index - 1].startswith('#') or '=' in line, (
                    f'{path.name}: field {line!r} has no comment above it')
