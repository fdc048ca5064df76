"""Data-parallel runs under ``torchrun``: the process group, per-rank samplers, reductions.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`init_distributed` joins
the group (NCCL on GPUs, gloo on CPUs). A plain ``python``/console-script start is a world of
one, with the same code path. Rank 0 alone writes files and logs.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from simtrack_ros.training.reproducibility import derive_seed


@dataclass(frozen=True)
class World:
    """This process's place in the run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is in use (more than one process)."""
        return self.size > 1


def init_distributed(device_type: str) -> World:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (else a world of one)."""
    size = int(os.environ.get('WORLD_SIZE', '1'))
    if size <= 1:
        return World()
    world = World(rank=int(os.environ['RANK']), size=size,
                  local_rank=int(os.environ.get('LOCAL_RANK', '0')))
    if not dist.is_initialized():
        backend = 'nccl' if device_type == 'cuda' else 'gloo'
        if backend == 'nccl':
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
    return world


def close_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def reduce_sums(values: Dict[str, float], device: torch.device) -> Dict[str, float]:
    """Sum scalars over all ranks (the identity in a world of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return dict(values)
    names = sorted(values)
    flat = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(flat)
    return dict(zip(names, flat.tolist()))


def all_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank."""
    return reduce_sums({'ok': float(not flag)}, device)['ok'] == 0


class EpochSampler(Sampler[int]):
    """This rank's share of an epoch's sample order, drawn from (seed, epoch).

    ``shuffle``: a permutation (padded by wrapping around to a multiple of the world size, as
    DistributedSampler does); ``weights``: draws with replacement in proportion to them (a
    class-balancing sampler); neither: the dataset order, split without padding (validation:
    each sample counted once over all ranks). Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, length: int, world: World, seed: int = 0, shuffle: bool = True,
                 weights: Optional[np.ndarray] = None) -> None:
        self.length = length
        self.world = world
        self.seed = seed
        self.shuffle = shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` gives."""
        self.epoch = epoch

    def _order(self) -> List[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        if self.weights is not None:
            total = -(-self.length // self.world.size) * self.world.size
            return torch.multinomial(self.weights, total, True, generator=generator).tolist()
        order = torch.randperm(self.length, generator=generator).tolist()
        padding = -len(order) % self.world.size
        return order + (order * (padding // max(len(order), 1) + 1))[:padding]

    def __iter__(self) -> Iterator[int]:
        if not (self.shuffle or self.weights is not None):
            return iter(range(self.world.rank, self.length, self.world.size))
        return iter(self._order()[self.world.rank::self.world.size])

    def __len__(self) -> int:
        if not (self.shuffle or self.weights is not None):
            return len(range(self.world.rank, self.length, self.world.size))
        return -(-self.length // self.world.size)
