"""Tracker settings that belong to the package's demo weights.

No torch and no rclpy here, so that the launch file can import it.
"""
from __future__ import annotations

from typing import Optional

#: Search factor tuned for the demo weights on the synthetic 'tune' split (docs/demo-model.md);
#: the demo, and the launch file with ``demo:=true``, set the node's ``search_factor`` to it
#: (the node's default stays the official 4).
DEMO_SEARCH_FACTOR = 3.0


def demo_search_factor(demo: bool, weights: str, search_factor: str,
                       own_params_file: bool) -> Optional[float]:
    """Return the launch file's ``search_factor`` for the demo weights, or None (leave it).

    ``demo:=true`` with the package's params file and no ``weights`` or ``search_factor``
    argument runs the demo weights: their tuned factor. A params file of one's own keeps its
    own weights and factor.
    """
    given = weights or search_factor or own_params_file
    return DEMO_SEARCH_FACTOR if demo and not given else None
