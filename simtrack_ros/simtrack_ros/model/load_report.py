"""What a checkpoint load did, and the error raised when a checkpoint cannot be used."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


@dataclass
class LoadReport:
    """What a load did: counts, and every key that was missing, unexpected or mis-shaped."""

    source: str = ''
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: The ``metadata`` stored in a simtrack_ros checkpoint (empty for other formats).
    metadata: Dict[str, Any] = field(default_factory=dict)

    def problems(self, limit: int = 20) -> List[str]:
        """One line per kind of problem (missing, unexpected, each mismatch), capped."""
        lines = []
        for kind, keys in (('missing', self.missing), ('unexpected', self.unexpected)):
            if keys:
                more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
                lines.append(f'{kind} ({len(keys)}): {", ".join(keys[:limit])}{more}')
        for key, expected, got in self.mismatched[:limit]:
            lines.append(f'mismatched {key}: model {list(expected)}, checkpoint {list(got)}')
        if len(self.mismatched) > limit:
            lines.append(f'... and {len(self.mismatched) - limit} more mismatched')
        return lines

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [f'loaded {self.loaded} tensors' + (f' from {self.source}' if self.source else '')]
        lines.extend(self.problems())
        lines.extend(f'note: {note}' for note in self.notes)
        return '\n'.join(lines)
