"""Classification report of a checkpoint on an annotated dataset (``--evaluate``).

The checkpoint is loaded the way the node loads it (:func:`~simtrack_ros.model.load_checkpoint`),
the samples are the guide's (template from the first frame with a box, search crop around each
annotated frame's box, no jitter), and the output folder gets ``evaluation.json`` (every metric),
``classification_report.txt`` and ``confusion.png``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch
from torch.utils.data import DataLoader

from simtrack_ros.model.checkpoint import load_checkpoint
from simtrack_ros.training.checkpointing import plain, read_training_entry
from simtrack_ros.training.data_setup import crop_settings, item_key
from simtrack_ros.training.metrics import classification_report, ClassificationMeter
from simtrack_ros.training.plots import plot_confusion
from simtrack_ros.training.precision import Precision
from simtrack_ros.training.samples import ClassificationDataset, load_annotated

#: Which sequences of --data_dir to evaluate.
EVAL_SPLITS = ('all', 'train', 'val')


def _select(items: List[Any], checkpoint: str, split: str) -> List[Any]:
    if split == 'all':
        return items
    names = read_training_entry(checkpoint)['split'][split]
    chosen = [item for item in items if item_key(item) in set(names)]
    if not chosen:
        raise ValueError(f'none of the checkpoint\'s {split} sequences ({", ".join(names[:5])})'
                         ' is in the dataset')
    return chosen


@torch.no_grad()
def evaluate_checkpoint(checkpoint: str, data_dir: str, out: Path, split: str = 'all',
                        batch_size: int = 16, num_workers: int = 0,
                        max_samples_per_seq: int = 500, device: torch.device = torch.device('cpu'),
                        precision: str = 'fp32', print_fn: Callable[[str], None] = print
                        ) -> Dict[str, Any]:
    """Evaluate ``checkpoint``'s class head on ``data_dir``; write the reports to ``out``."""
    model, _ = load_checkpoint(checkpoint)
    if not model.cls_head_trained:
        raise ValueError(f'{checkpoint}: the classification head is untrained: nothing to '
                         'evaluate (train one with simtrack-finetune)')
    items = _select(load_annotated(data_dir), checkpoint, split)
    dataset = ClassificationDataset(items, crop_settings(model.config), max_samples_per_seq)
    model.to(device).eval()
    meter = ClassificationMeter(model.class_names, model.config.multi_label)
    autocast = Precision(precision, device.type).autocast
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        with autocast():
            outputs = model(batch['template'].to(device), batch['search'].to(device),
                            batch['template_anno'].to(device), run_box_head=False)
        meter.update_from_batch(outputs['cls_logits'], batch)
    metrics = plain(meter.compute())
    metrics.update(checkpoint=str(checkpoint), data_dir=str(data_dir), split=split,
                   sequences=[item_key(item) for item in items])
    out.mkdir(parents=True, exist_ok=True)
    (out / 'evaluation.json').write_text(json.dumps(metrics, indent=1), encoding='utf-8')
    text = classification_report(metrics)
    (out / 'classification_report.txt').write_text(text + '\n', encoding='utf-8')
    plot_confusion(metrics['confusion'], metrics['class_names'], out / 'confusion.png',
                   title=f'{Path(checkpoint).name} on {Path(data_dir).name} ({split})')
    print_fn(f'{checkpoint} ({model.config.name}, '
             f'{"multi-label" if model.config.multi_label else "single-label"}): '
             f'{len(dataset)} samples from {len(items)} sequences')
    print_fn(text)
    return metrics
