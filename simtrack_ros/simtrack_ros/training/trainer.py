"""The training loop: epochs of optimizer steps, validation, checkpoints and logs.

One :class:`Trainer` per process. Under ``torchrun`` the model is wrapped in
DistributedDataParallel (rebuilt when the trainable set changes, e.g. at the second stage), each
rank trains on its sampler's share, metrics are summed over the ranks, and rank 0 alone writes
``last.pth``/``best.pth`` and the logs. Each epoch starts by reseeding every generator from
(seed, epoch, rank), so a run resumed from ``last.pth`` repeats the uninterrupted run's steps.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
import math
import os
from pathlib import Path
import shutil
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from simtrack_ros.model.simtrack import SimTrack
from simtrack_ros.training.checkpointing import (BEST, Best, LAST, remove_stale_temps,
                                                 save_training_checkpoint, training_state,
                                                 TrainingState)
from simtrack_ros.training.data_setup import make_loader, RunData, Split, train_sampler
from simtrack_ros.training.distributed import EpochSampler, reduce_sums, World
from simtrack_ros.training.losses import box_cxcywh_to_xyxy, LossWeights, SimTrackLoss
from simtrack_ros.training.metrics import BoxMeter, classification_report, ClassificationMeter
from simtrack_ros.training.observe import RunLog
from simtrack_ros.training.precision import Precision
from simtrack_ros.training.reproducibility import rng_state, seed_epoch, set_rng_state
from simtrack_ros.training.schedule import build_optimizer, LrSchedule, set_trainable
from simtrack_ros.training.settings import TrainSettings

Batch = Dict[str, Any]


def best_metric(settings: TrainSettings, multi_label: bool) -> str:
    """Name of the validation value ``best.pth`` is chosen by.

    Joint runs are chosen by ``joint_score`` (box IoU plus class macro-F1): either alone picks
    epochs where the other head is weak.
    """
    if not settings.trains_cls:
        return 'mean_iou'
    if settings.trains_box:
        return 'joint_score'
    return class_metric(multi_label)


def class_metric(multi_label: bool) -> str:
    """Name of the validation macro-F1 of the class head."""
    return 'multi_label.macro_f1' if multi_label else 'macro_f1'


def lookup(values: Mapping[str, Any], dotted: str) -> Optional[float]:
    """``values['a']['b']`` for ``'a.b'`` (None where missing)."""
    for key in dotted.split('.'):
        if not isinstance(values, Mapping) or key not in values:
            return None
        values = values[key]
    return values  # type: ignore[return-value]


@dataclass
class _Sums:
    """Sample-weighted sums of loss terms over an epoch."""

    values: Dict[str, float]
    samples: int = 0

    def add(self, terms: Mapping[str, torch.Tensor], count: int) -> None:
        for name, value in terms.items():
            key = 'loss' if name == 'total' else name
            self.values[key] = self.values.get(key, 0.0) + float(value) * count
        self.samples += count

    def means(self, device: torch.device) -> Dict[str, float]:
        """Means over every rank's samples."""
        totals = reduce_sums({**self.values, '_samples': float(self.samples)}, device)
        samples = totals.pop('_samples')
        return {k: v / samples for k, v in totals.items()} if samples else {}


class Trainer:
    """Trains ``model`` on ``data`` as ``settings`` say; :meth:`fit` runs the remaining epochs."""

    def __init__(self, settings: TrainSettings, model: SimTrack, data: RunData, split: Split,
                 world: World, device: torch.device, precision: Precision, out: Path,
                 print_fn: Callable[[str], None] = print,
                 resume: Optional[Mapping[str, Any]] = None) -> None:
        self.settings = settings
        self.model = model.to(device)
        self.data = data
        self.world = world
        self.device = device
        self.precision = precision
        self.out = out
        self.print = print_fn if world.is_main else (lambda text: None)
        self.heads = set(model.trained_heads) | {
            head for head, on in (('box', settings.trains_box), ('cls', settings.trains_cls))
            if on}
        self.optimizer = build_optimizer(self.model, settings)
        self.scaler = precision.scaler()
        self.sampler = train_sampler(data, world, settings.seed)
        self.loader = make_loader(data.train, self.sampler, settings, device)
        self.steps_per_epoch = math.ceil(len(self.loader) / settings.accum_steps)
        self.schedule = LrSchedule.from_settings(settings, self.steps_per_epoch)
        weights = LossWeights(giou=settings.giou_weight, l1=settings.l1_weight,
                              cls=settings.lambda_cls)
        multi = model.config.multi_label
        self.criterion = SimTrackLoss(
            weights, multi_label=multi, class_weight=data.class_weight,
            pos_weight=data.pos_weight, train_box=settings.trains_box,
            train_cls=settings.trains_cls).to(device)
        self.val_cls_loss = SimTrackLoss(
            weights, multi_label=multi, class_weight=data.class_weight,
            pos_weight=data.pos_weight, train_box=False).to(device)
        self.val_box_loss = SimTrackLoss(weights, train_cls=False).to(device)
        self.state = TrainingState(split=split, best=Best(best_metric(settings, multi)))
        self.net: nn.Module = self.model
        self._trainable: List[str] = []
        if resume is not None:
            self._restore(resume)
        self.log: Optional[RunLog] = None
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(out)
            if resume is None:
                (out / BEST).unlink(missing_ok=True)  # an earlier run's (--overwrite)
            self.log = RunLog(out, self.print, settings.tensorboard)
            self.log.rewind(self.state.epoch, self.state.step)

    # -- state -------------------------------------------------------------------------------
    def _restore(self, entry: Mapping[str, Any]) -> None:
        scales = [group['lr_scale'] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(entry['optimizer'])
        for group, scale in zip(self.optimizer.param_groups, scales):
            group['lr_scale'] = scale  # the current --backbone_lr_mult wins
        if entry.get('scaler'):
            self.scaler.load_state_dict(entry['scaler'])
        self.state = training_state(entry)
        set_rng_state(entry['rng'])

    def _payload(self) -> Dict[str, Any]:
        return {'settings': self.settings.to_dict(), 'optimizer': self.optimizer.state_dict(),
                'scaler': self.scaler.state_dict(), 'rng': rng_state(),
                'scheduler': {'kind': self.schedule.kind, 'lr': self.schedule.lr,
                              'steps_per_epoch': self.steps_per_epoch}}

    def _save(self, metrics: Mapping[str, Any], improved: bool) -> None:
        self.model.trained_heads = set(self.heads)
        last = save_training_checkpoint(self.out / LAST, self.model, self.state,
                                        self._payload(), metrics)
        if improved:
            temp = self.out / f'.{BEST}.{os.getpid()}.link.tmp'
            try:
                os.link(last, temp)  # the same bytes, no second write
            except OSError:
                shutil.copyfile(last, temp)
            os.replace(temp, self.out / BEST)

    # -- model wrapping ----------------------------------------------------------------------
    def _prepare_epoch(self, epoch: int) -> None:
        trainable = set_trainable(self.model, self.settings, epoch)
        if trainable != self._trainable:
            if self._trainable:
                self.print(f'epoch {epoch + 1}: {len(trainable)} trainable tensors '
                           f'(was {len(self._trainable)})')
            self._trainable = trainable
            if self.world.distributed:
                ids = [self.device.index] if self.device.type == 'cuda' else None
                self.net = DistributedDataParallel(self.model, device_ids=ids)

    def _forward(self, batch: Batch, box: bool, cls: bool) -> Dict[str, torch.Tensor]:
        with self.precision.autocast():
            return self.net(batch['template'], batch['search'], batch['template_anno'],
                            run_box_head=box, run_cls_head=cls)

    def _to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    # -- training ----------------------------------------------------------------------------
    def _optimizer_step(self) -> Dict[str, float]:
        lr = self.schedule.apply(self.optimizer, self.state.step)
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        limit = self.settings.grad_clip or math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
        if not math.isfinite(norm) and not self.scaler.is_enabled():
            raise FloatingPointError(
                f'gradient norm is {norm} at step {self.state.step}: lower --lr, set '
                '--grad_clip, or use --precision fp32')
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        return {'lr': lr, 'grad_norm': norm}

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        """One pass over this rank's share of the epoch; metrics summed over ranks."""
        settings = self.settings
        self.net.train()
        self.sampler.set_epoch(epoch)
        self.data.train.set_epoch(epoch)
        sums = _Sums({})
        cls_meter = ClassificationMeter(self.model.class_names, self.model.config.multi_label) \
            if settings.trains_cls else None
        box_meter = BoxMeter() if settings.trains_box else None
        batches = len(self.loader)
        bar = tqdm(total=batches, desc=f'epoch {epoch + 1}/{settings.epochs}', unit='batch',
                   disable=not self.world.is_main, dynamic_ncols=True, leave=False)
        started, seen, lr = time.perf_counter(), 0, 0.0
        for index, batch in enumerate(self.loader):
            batch = self._to_device(batch)
            group_start = index - index % settings.accum_steps
            group = min(settings.accum_steps, batches - group_start)
            steps_now = index == group_start + group - 1
            sync = contextlib.nullcontext()
            if not steps_now and isinstance(self.net, DistributedDataParallel):
                sync = self.net.no_sync()
            with sync:
                outputs = self._forward(batch, settings.trains_box, settings.trains_cls)
                terms = self.criterion(outputs, batch)
                self.scaler.scale(terms['total'] / group).backward()
            terms = {k: v.detach() for k, v in terms.items()}
            count = len(batch['search'])
            sums.add(terms, count)
            self._update_meters(cls_meter, box_meter, outputs, batch)
            seen += count
            if steps_now:
                step = self._optimizer_step()
                lr = step['lr']
                if self.log is not None:
                    self.log.step({'step': self.state.step, 'epoch': epoch + 1, **step,
                                   **{('loss' if k == 'total' else k): float(v)
                                      for k, v in terms.items()}})
            rate = seen * self.world.size / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f'{float(terms["total"]):.4f}', samples_s=f'{rate:.1f}')
            bar.update()
        bar.close()
        elapsed = time.perf_counter() - started
        metrics = sums.means(self.device)
        metrics.update(self._meter_metrics(cls_meter, box_meter))
        samples = int(reduce_sums({'n': float(seen)}, self.device)['n'])
        metrics.update(lr=lr, time_s=elapsed, epoch_samples=samples,
                       samples_per_s=samples / elapsed)
        return metrics

    def _update_meters(self, cls_meter: Optional[ClassificationMeter],
                       box_meter: Optional[BoxMeter], outputs: Dict[str, torch.Tensor],
                       batch: Batch) -> None:
        if cls_meter is not None and 'cls_logits' in outputs:
            cls_meter.update_from_batch(outputs['cls_logits'], batch)
        if box_meter is not None and 'pred_boxes' in outputs:
            box_meter.update(box_cxcywh_to_xyxy(outputs['pred_boxes'].float()),
                             batch['search_box'])

    @staticmethod
    def _meter_metrics(cls_meter: Optional[ClassificationMeter], box_meter: Optional[BoxMeter]
                       ) -> Dict[str, Any]:
        metrics: Dict[str, Any] = {}
        if cls_meter is not None:
            cls_meter.all_reduce()
            metrics.update(cls_meter.compute())
        if box_meter is not None:
            box_meter.all_reduce()
            box = box_meter.compute()
            box['box_samples'] = box.pop('samples')
            metrics.update(box)
        return metrics

    # -- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> Dict[str, Any]:
        """Metrics of the validation sets (empty without validation sequences)."""
        self.model.eval()
        sums = _Sums({})
        cls_meter = box_meter = None
        passes = []
        if self.data.val_cls is not None:
            cls_meter = ClassificationMeter(self.model.class_names,
                                            self.model.config.multi_label)
            passes.append((self.data.val_cls, False, True, self.val_cls_loss))
        if self.data.val_box is not None:
            box_meter = BoxMeter()
            passes.append((self.data.val_box, True, False, self.val_box_loss))
        for dataset, box, cls, criterion in passes:
            sampler = EpochSampler(len(dataset), self.world, shuffle=False)
            for batch in make_loader(dataset, sampler, self.settings, self.device):
                batch = self._to_device(batch)
                with self.precision.autocast():
                    outputs = self.model(batch['template'], batch['search'],
                                         batch['template_anno'],
                                         run_box_head=box, run_cls_head=cls)
                terms = criterion(outputs, batch)
                sums.add({k: v for k, v in terms.items() if k != 'total'}, len(batch['search']))
                self._update_meters(cls_meter, box_meter, outputs, batch)
        if not passes:
            return {}
        metrics = self._weighted_loss(sums.means(self.device))
        metrics.update(self._meter_metrics(cls_meter, box_meter))
        class_f1 = lookup(metrics, class_metric(self.model.config.multi_label))
        if class_f1 is not None and metrics.get('mean_iou') is not None:
            metrics['joint_score'] = float(metrics['mean_iou']) + float(class_f1)
        return metrics

    def _weighted_loss(self, terms: Dict[str, float]) -> Dict[str, float]:
        weights = {'giou': self.settings.giou_weight, 'l1': self.settings.l1_weight,
                   'cls': self.settings.lambda_cls}
        return {'loss': sum(weights[k] * v for k, v in terms.items()), **terms}

    # -- the run -----------------------------------------------------------------------------
    def _report(self, row: Mapping[str, Any], improved: bool) -> None:
        train, val = row['train'], row.get('val') or {}
        parts = [f'epoch {row["epoch"]}/{self.settings.epochs}',
                 f'train loss {train.get("loss", math.nan):.4f}']
        if 'loss' in val:
            parts.append(f'val loss {val["loss"]:.4f}')
        if val.get('accuracy') is not None:
            base = val['baseline']
            parts.append(f'val acc {val["accuracy"]:.3f} macro-F1 {val["macro_f1"] or 0:.3f} '
                         f'(always-normal {base["accuracy"]:.3f} / {base["macro_f1"] or 0:.3f})')
        if val.get('mean_iou') is not None:
            parts.append(f'val IoU {val["mean_iou"]:.3f}')
        parts.append(f'lr {train["lr"]:.2e}  {train["samples_per_s"]:.1f} samples/s')
        self.print('  '.join(parts) + ('  [best]' if improved else ''))
        if val.get('accuracy') is not None:
            self.print(classification_report(val))

    def fit(self) -> TrainingState:
        """Run the epochs from ``state.epoch`` to ``settings.epochs``; return the final state."""
        settings = self.settings
        if self.state.epoch >= settings.epochs:
            self.print(f'nothing to do: {self.state.epoch} of {settings.epochs} epochs done')
        try:
            for epoch in range(self.state.epoch, settings.epochs):
                seed_epoch(settings.seed, epoch, self.world.rank)
                self._prepare_epoch(epoch)
                train = self.train_epoch(epoch)
                val = self.validate()
                self.state.epoch = epoch + 1
                value = lookup(val, self.state.best.metric)
                improved = self.state.best.improves(value)
                if improved:
                    self.state.best = Best(self.state.best.metric, float(value), epoch + 1)
                row = {'epoch': epoch + 1, 'step': self.state.step, 'train': train,
                       'val': val}
                if self.log is not None:
                    self._save({'train': train, 'val': val}, improved)
                    self.log.epoch(row, list(self.model.class_names))
                    self._report(row, improved)
        finally:
            if self.log is not None:
                self.log.close()
        return self.state
