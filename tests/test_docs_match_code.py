"""The README's parameter table states every node parameter with the default the code declares."""
from __future__ import annotations

import pathlib
import re
from typing import Dict

from simtrack_ros.ros import parameters

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'


def _documented_defaults() -> Dict[str, str]:
    """Return parameter -> default text from the README table rows (``| `a` / `b` | ...``)."""
    text = README.read_text()
    table = text[text.index('| parameter | default |'):]
    table = table[:table.index('\n\n')]
    documented = {}
    for row in table.splitlines()[2:]:
        names, defaults = row.split(' | ')[:2]
        names = re.findall(r'`([^`]*)`', names)
        values = re.findall(r'`([^`]*)`', defaults)
        assert len(names) == len(values), row
        documented.update(zip(names, values))
    return documented


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return "''" if value == '' else str(value)


def test_readme_parameter_table_matches_the_declared_defaults():
    documented = _documented_defaults()
    declared = {spec.name: _as_text(spec.default) for spec in parameters.SPECS}
    assert documented == declared
