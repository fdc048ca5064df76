"""Tracker settings that belong to the package's demo weights.

No torch and no rclpy here, so that the launch file can import it.
"""
from __future__ import annotations

from typing import Optional

#: Search factor tuned for the demo weights on the synthetic 'tune' split (docs/demo-model.md);
#: the demo, and the launch file with ``demo:=true``, set the node's ``search_factor`` to it
#: (the node's default stays the official 4).
DEMO_SEARCH_FACTOR = 3.0


def demo_search_factor(demo: bool, weights: str, search_factor: str) -> Optional[float]:
    """Return the launch file's ``search_factor`` for the demo weights, or None (leave it).

    ``demo:=true`` without a ``weights`` or ``search_factor`` argument runs the demo camera
    with the weights of the params file, by default the demo weights: their tuned factor.
    """
    return DEMO_SEARCH_FACTOR if demo and not weights and not search_factor else None
