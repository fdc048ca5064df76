"""Point the ROS 2 PyPI wheels' CMake exports at this interpreter's include dirs.

The ``ros-*`` wheels export CMake targets that name the wheel build machine's Python and NumPy
include paths (``/opt/python/cp3XX-cp3XX/...``); CMake then refuses to build any interface
package on top of them. This rewrites those two paths in every ``.cmake`` file under the given
prefix. Idempotent: a second run changes nothing. Re-run after reinstalling the wheels.
"""
from __future__ import annotations

import pathlib
import re
import sys
import sysconfig

import numpy

PYTHON_INCLUDE = re.compile(r'/opt/python/cp3\d+-cp3\d+/include/python3\.\d+')
NUMPY_INCLUDE = re.compile(
    r'/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include')


def fix_prefix(prefix: pathlib.Path) -> int:
    """Rewrite the paths under ``prefix``; return the number of files changed."""
    python_include = sysconfig.get_paths()['include']
    numpy_include = numpy.get_include()
    changed = 0
    for sub in ('share', 'lib'):
        for path in sorted((prefix / sub).rglob('*.cmake')):
            text = path.read_text()
            if '/opt/python/' not in text:
                continue
            fixed = NUMPY_INCLUDE.sub(numpy_include, text)
            fixed = PYTHON_INCLUDE.sub(python_include, fixed)
            if fixed != text:
                path.write_text(fixed)
                changed += 1
    return changed


def main() -> int:
    prefix = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
    changed = fix_prefix(prefix)
    print(f'  ros wheel cmake fix: {changed} file(s) rewritten under {prefix}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
