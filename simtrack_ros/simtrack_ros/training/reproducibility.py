"""Deterministic seeding, and random-number states as ``weights_only``-loadable plain data.

Every epoch reseeds the process's generators from (seed, epoch, rank) (:func:`seed_epoch`), and
the data are drawn from (seed, epoch, index), so a run resumed at an epoch boundary takes the same
random decisions (dropout, sample order, augmentation, DataLoader worker seeds) as one that never
stopped. The states of the generators are stored in checkpoints too (:func:`rng_state`).
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """Mix integers into a 63-bit seed (numpy's SeedSequence: no correlated neighbours)."""
    words = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return int(words[0]) << 31 ^ int(words[1])


def seed_everything(seed: int) -> None:
    """Seed python's random, numpy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed all generators for one epoch of one rank."""
    seed_everything(derive_seed(seed, epoch, rank))


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random from the worker's torch seed (DataLoader ``worker_init_fn``)."""
    seed = torch.initial_seed()
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def make_deterministic() -> None:
    """Ask torch for deterministic kernels (errors on ops that have none)."""
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False


def rng_state() -> Dict[str, Any]:
    """Return the states of python's random, numpy's global generator and torch (plain data)."""
    py_version, py_state, py_gauss = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: Dict[str, Any] = {
        'python': [py_version, list(py_state), py_gauss],
        'numpy': {'kind': kind, 'keys': keys.tolist(), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'gauss': float(gauss)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py_version, py_state, py_gauss = state['python']
    random.setstate((py_version, tuple(py_state), py_gauss))
    numpy = state['numpy']
    np.random.set_state((numpy['kind'], np.asarray(numpy['keys'], np.uint32), numpy['pos'],
                         numpy['has_gauss'], numpy['gauss']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
