"""The data of a run: the sequence split, the datasets of the task, their samplers and loaders.

============  =====================================  ==========================================
task          training samples                       validation
============  =====================================  ==========================================
``cls``       ClassificationDataset (augmented)      ClassificationDataset (no jitter): classes
``joint``     TrackingPairDataset, search frames     both of the rows around it
              among the annotated ones
``box``       TrackingPairDataset, labels optional   TrackingPairDataset drawn once: box IoU
============  =====================================  ==========================================

The split is by sequence; a resumed run takes the sequence names stored in its checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from simtrack_ros.model.config import SimTrackConfig
from simtrack_ros.training.augment import Augment
from simtrack_ros.training.distributed import EpochSampler, World
from simtrack_ros.training.losses import class_weights, positive_weights
from simtrack_ros.training.reproducibility import seed_worker
from simtrack_ros.training.samples import (AnnotatedSequence, ClassificationDataset,
                                           CropSettings, load_annotated, split_by_sequence,
                                           TrackingPairDataset)
from simtrack_ros.training.settings import TrainSettings

Split = Dict[str, List[str]]


def item_key(item: AnnotatedSequence) -> str:
    """Return the name a split stores: ``<split folder>/<sequence>`` with split folders."""
    return f'{item.split}/{item.name}' if item.split else item.name


def _names(items: Sequence[AnnotatedSequence]) -> List[str]:
    return [item_key(item) for item in items]


def split_items(settings: TrainSettings, stored: Optional[Split] = None
                ) -> Tuple[List[AnnotatedSequence], List[AnnotatedSequence], Split]:
    """(train, val, names) of the dataset: by ``--val_split``, or the ``stored`` names."""
    items = load_annotated(settings.data_dir, require_records=settings.task != 'box')
    if stored is None:
        train, val = split_by_sequence(items, settings.val_split, settings.seed)
    else:
        by_name = {item_key(item): item for item in items}
        lost = [n for n in stored['train'] + stored['val'] if n not in by_name]
        if lost:
            raise ValueError(f"{settings.data_dir}: sequences of the checkpoint's split are "
                             f'missing: {", ".join(lost[:5])}')
        train = [by_name[n] for n in stored['train']]
        val = [by_name[n] for n in stored['val']]
    if not train:
        raise ValueError(f'{settings.data_dir}: no training sequence left after the split')
    return train, val, {'train': _names(train), 'val': _names(val)}


@dataclass
class RunData:
    """The datasets of a run and what the losses need to know about the training labels."""

    train: Dataset
    val_cls: Optional[ClassificationDataset]
    val_box: Optional[TrackingPairDataset]
    class_weight: Optional[np.ndarray] = None      # softmax head, --balance weights
    pos_weight: Optional[np.ndarray] = None        # multi-label head
    sample_weights: Optional[np.ndarray] = None    # --balance sampler


def crop_settings(config: SimTrackConfig) -> CropSettings:
    """Official crop factors and jitter at the model's template and search sizes."""
    return CropSettings(template_size=config.template_size, search_size=config.search_size)


def build_data(settings: TrainSettings, config: SimTrackConfig,
               train_items: Sequence[AnnotatedSequence],
               val_items: Sequence[AnnotatedSequence]) -> RunData:
    """Datasets of the task (see the module table) and the class-balance weights."""
    crops = crop_settings(config)
    augment = Augment() if settings.augment else None
    labelled = None
    if settings.trains_cls:
        labelled = ClassificationDataset(train_items, crops, settings.max_samples_per_seq,
                                         augment=augment, seed=settings.seed)
    if settings.task == 'cls':
        train: Dataset = labelled
    else:
        train = TrackingPairDataset(train_items, crops, settings.samples_per_epoch,
                                    settings.max_gap, augment=augment, seed=settings.seed,
                                    with_labels=settings.trains_cls,
                                    labelled_search=settings.trains_cls)
    data = RunData(train=train, val_cls=None, val_box=None)
    if val_items and settings.trains_cls:
        data.val_cls = ClassificationDataset(val_items, crops, settings.max_samples_per_seq)
    if val_items and settings.trains_box:
        data.val_box = TrackingPairDataset(val_items, crops, settings.val_samples,
                                           settings.max_gap, seed=settings.seed + 1,
                                           with_labels=False)
    if labelled is not None:
        if config.multi_label:
            data.pos_weight = positive_weights(labelled.multi_labels(), labelled.judged_masks())
        else:
            counts = np.bincount(labelled.labels(), minlength=config.num_classes)
            if settings.balance == 'weights':
                data.class_weight = class_weights(counts)
            elif settings.balance == 'sampler':
                data.sample_weights = 1.0 / counts[labelled.labels()]
    return data


def make_loader(dataset: Dataset, sampler: EpochSampler, settings: TrainSettings,
                device: torch.device) -> DataLoader:
    """Return a DataLoader over ``sampler``'s share; workers are re-made each epoch.

    Workers are not persistent: each epoch's workers copy the dataset after ``set_epoch``, so
    their random draws follow the epoch.
    """
    return DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler,
                      num_workers=settings.num_workers, worker_init_fn=seed_worker,
                      pin_memory=device.type == 'cuda', drop_last=False)


def train_sampler(data: RunData, world: World, seed: int) -> EpochSampler:
    """Return the training sampler: shuffled, or class-balanced with ``--balance sampler``."""
    return EpochSampler(len(data.train), world, seed=seed, shuffle=True,
                        weights=data.sample_weights)
