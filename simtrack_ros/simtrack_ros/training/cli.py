"""``simtrack-finetune``: fine-tune SimTrack's class head (and box head) on annotated sequences.

    simtrack-finetune --preset guide --data_dir DATA --pretrained_weights sim-vit-b-16.pth
    simtrack-finetune --resume runs/finetune/last.pth
    simtrack-finetune --evaluate runs/finetune/best.pth --data_dir TEST --out runs/eval
    torchrun --nproc_per_node 8 -m simtrack_ros.training.cli --preset mvtd --data_dir DATA ...

Settings combine as defaults < ``--preset`` < explicit flags (a resumed run: the checkpoint's
settings < explicit flags). Exit status 0 on success, 2 for a bad command line, data folder or
checkpoint (message on stderr), 1 for an error while training.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import signal
import sys
import threading
from types import FrameType
from typing import Any, Dict, Optional, Sequence

import torch

from simtrack_ros.model.checkpoint import CheckpointError, load_checkpoint
from simtrack_ros.model.config import CONFIG_NAMES
from simtrack_ros.training.checkpointing import LAST, read_training_entry
from simtrack_ros.training.data_setup import build_data, split_items
from simtrack_ros.training.distributed import close_distributed, init_distributed, World
from simtrack_ros.training.evaluate import EVAL_SPLITS, evaluate_checkpoint
from simtrack_ros.training.precision import resolve_device, resolve_precision
from simtrack_ros.training.reproducibility import make_deterministic, seed_everything
from simtrack_ros.training.settings import (BALANCES, check, PRECISIONS, PRESETS, resolve,
                                            SCHEDULES, TASKS, TrainSettings)
from simtrack_ros.training.start import start_model
from simtrack_ros.training.trainer import Trainer

PROG = 'simtrack-finetune'
_DEFAULTS = TrainSettings()
#: Errors of the command line, the data or a checkpoint: exit status 2 with the message.
USAGE_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, CheckpointError)


def _default(name: str) -> str:
    value = getattr(_DEFAULTS, name)
    return f' (default {value})' if value not in (None, ()) else ''


def build_parser() -> argparse.ArgumentParser:
    """Build the parser; only flags given explicitly appear in the parsed namespace."""
    parser = argparse.ArgumentParser(
        prog=PROG, argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Fine-tune SimTrack on sequences annotated with tracking challenges '
                    '(docs/training.md). Writes <out>/last.pth and <out>/best.pth (loadable by '
                    'the tracker node), metrics.jsonl, steps.jsonl, curves.png, confusion.png.',
        epilog='presets:\n' + '\n'.join(
            f'  {name}: ' + ', '.join(f'{k}={v}' for k, v in values.items())
            for name, values in PRESETS.items()))
    run = parser.add_argument_group('run')
    run.add_argument('--data_dir', help='dataset root (GOT-10k/MVTD layout with '
                     'annotations.jsonl per sequence; train/ and val/ folders are used as the '
                     'split when present)')
    run.add_argument('--out', help='output folder' + _default('out'))
    run.add_argument('--preset', choices=sorted(PRESETS), help='a named recipe (see below); '
                     'explicit flags override its values')
    run.add_argument('--task', choices=TASKS, help='cls: class head only (box head frozen); '
                     'joint: box and class heads on tracking pairs; box: box head only, '
                     'labels optional' + _default('task'))
    run.add_argument('--train_box', dest='task', action='store_const', const='joint',
                     help='same as --task joint')
    run.add_argument('--resume', metavar='CKPT', help='continue the run of this last.pth '
                     'exactly (its settings and split; explicit flags override)')
    run.add_argument('--overwrite', action='store_true', help='start afresh in an --out that '
                     'holds a run (its checkpoints and logs are replaced)')
    run.add_argument('--evaluate', metavar='CKPT', help='instead of training: classification '
                     'report and confusion matrix of CKPT on --data_dir, written to --out')
    run.add_argument('--eval_split', choices=EVAL_SPLITS, help='with --evaluate: all sequences '
                     "of --data_dir, or the checkpoint's train or val sequences (default all)")
    model = parser.add_argument_group('model and starting point')
    model.add_argument('--pretrained_weights', metavar='PATH', help='official SimTrack weights, '
                       'a CLIP checkpoint (backbone only) or one of ours; none: random '
                       'initialisation (small configs)')
    model.add_argument('--config', help=f'model config ({", ".join(CONFIG_NAMES)}); '
                       "default: the checkpoint's, else simtrack-b16")
    model.add_argument('--model_option', dest='model_options', action='append',
                       metavar='KEY=VALUE', help='override a model config field, e.g. '
                       'search_size=128 (repeatable)')
    model.add_argument('--multi_label', action=argparse.BooleanOptionalAction,
                       help='per-class sigmoid head trained with masked BCE (default: the '
                       "checkpoint's, else a softmax head)")
    model.add_argument('--fusion', action=argparse.BooleanOptionalAction,
                       help='add the class features to the box features (zero-initialised)')
    optim = parser.add_argument_group('optimisation')
    flag = optim.add_argument
    flag('--epochs', type=int, help='epochs' + _default('epochs'))
    flag('--batch_size', type=int, help='samples per step and process' + _default('batch_size'))
    flag('--lr', type=float, help='AdamW learning rate of the heads' + _default('lr'))
    flag('--backbone_lr_mult', type=float, help='CLIP visual LR = lr x this (backbone.pos_fc '
         'keeps lr)' + _default('backbone_lr_mult'))
    flag('--weight_decay', type=float, help='AdamW weight decay' + _default('weight_decay'))
    flag('--schedule', choices=SCHEDULES, help='LR decay after warm-up' + _default('schedule'))
    flag('--lr_drop_epochs', type=int, nargs='+', metavar='EPOCH',
         help='step schedule: multiply the LR by --lr_gamma from these epochs on (default 40)')
    flag('--lr_gamma', type=float, help='step schedule factor' + _default('lr_gamma'))
    flag('--warmup_steps', type=int, help='linear warm-up, optimizer steps'
         + _default('warmup_steps'))
    flag('--min_lr_ratio', type=float, help='cosine schedule floor' + _default('min_lr_ratio'))
    flag('--grad_clip', type=float, help='max gradient norm, 0 = off' + _default('grad_clip'))
    flag('--accum_steps', type=int, help='batches per optimizer step (gradient accumulation)'
         + _default('accum_steps'))
    flag('--freeze_backbone', action=argparse.BooleanOptionalAction,
         help='train the heads only (backbone and bottleneck frozen)')
    flag('--stage2_epoch', type=int, metavar='EPOCH', help="the guide's two-stage schedule: "
         'heads only before this epoch, then everything at --stage2_lr (backbone x '
         '--backbone_lr_mult)')
    flag('--stage2_lr', type=float, help='LR of the second stage' + _default('stage2_lr'))
    flag('--precision', choices=PRECISIONS, help='auto: bf16 (or fp16 with a scaler) on a GPU, '
         'fp32 on the CPU' + _default('precision'))
    flag('--device', help='auto, cpu, cuda, cuda:N' + _default('device'))
    flag('--seed', type=int, help='seed of the split, sample order, augmentation and init'
         + _default('seed'))
    flag('--deterministic', action='store_true', help='deterministic kernels only (slower)')
    losses = parser.add_argument_group('losses')
    losses.add_argument('--balance', choices=BALANCES, help="softmax head: the guide's "
                        'inverse-frequency CE weights, a class-balanced sampler, or neither'
                        + _default('balance'))
    losses.add_argument('--lambda_cls', type=float, help='class loss weight'
                        + _default('lambda_cls'))
    losses.add_argument('--giou_weight', type=float, help='GIoU loss weight'
                        + _default('giou_weight'))
    losses.add_argument('--l1_weight', type=float, help='L1 loss weight' + _default('l1_weight'))
    data = parser.add_argument_group('data')
    data.add_argument('--val_split', type=float, help='share of sequences held out for '
                      'validation (by sequence)' + _default('val_split'))
    data.add_argument('--max_samples_per_seq', type=int, help='class samples per sequence, '
                      'evenly spaced' + _default('max_samples_per_seq'))
    data.add_argument('--samples_per_epoch', type=int, help='tracking pairs per epoch (joint, '
                      'box)' + _default('samples_per_epoch'))
    data.add_argument('--val_samples', type=int, help='validation tracking pairs (joint, box)'
                      + _default('val_samples'))
    data.add_argument('--max_gap', type=int, help='max frames between template and search'
                      + _default('max_gap'))
    data.add_argument('--augment', action=argparse.BooleanOptionalAction,
                      help='flip, colour jitter, blur, grey-scale (default on)')
    data.add_argument('--num_workers', type=int, help='DataLoader worker processes'
                      + _default('num_workers'))
    parser.add_argument('--tensorboard', action=argparse.BooleanOptionalAction,
                        help='TensorBoard events in <out>/tensorboard when installed '
                        '(default on)')
    return parser


def _explicit(namespace: argparse.Namespace) -> Dict[str, Any]:
    values = vars(namespace)
    for name in ('model_options', 'lr_drop_epochs'):
        if name in values:
            values[name] = tuple(values[name])
    return values


#: Settings a resumed run keeps: they fix the model and what it is trained for.
FIXED_ON_RESUME = ('task', 'config', 'model_options', 'pretrained_weights', 'multi_label',
                   'fusion')


def _resumed(explicit: Dict[str, Any], stored: TrainSettings, resume: str) -> Dict[str, Any]:
    """Check a resume's flags against the run's settings; return the flags to apply.

    A flag that would change the model or the task is refused; the run's folder is where
    ``resume`` is (a copied or moved run does not write into its old folder); other data
    is allowed with a warning.
    """
    for name in FIXED_ON_RESUME:
        if name in explicit and explicit[name] != getattr(stored, name):
            flag = '--model_option' if name == 'model_options' else f'--{name}'
            raise ValueError(f'{flag} {explicit[name]!r}: the run was started with '
                             f'{getattr(stored, name)!r} and a resumed run keeps it; start a '
                             f'new run from it with --pretrained_weights {resume}')
    explicit = dict(explicit)
    explicit.setdefault('out', str(Path(resume).parent))
    if explicit.get('data_dir', stored.data_dir) != stored.data_dir:
        print(f'{PROG}: warning: --data_dir {explicit["data_dir"]} differs from the run\'s '
              f'{stored.data_dir}: the resumed run reads its stored sequence names from it',
              file=sys.stderr)
    return explicit


def _settings(explicit: Dict[str, Any], entry: Optional[Dict[str, Any]],
              resume: Optional[str]) -> TrainSettings:
    overwrite = explicit.pop('overwrite', False)
    base = None if entry is None else TrainSettings.from_dict(entry['settings'])
    if base is not None:
        explicit = _resumed(explicit, base, resume)
    settings = resolve(explicit, base)
    if not settings.data_dir:
        raise ValueError('--data_dir is required')
    if Path(settings.out).exists() and not Path(settings.out).is_dir():
        raise ValueError(f'--out {settings.out} is a file: give a folder for the run')
    check(settings)
    if entry is None and (Path(settings.out) / LAST).exists() and not overwrite:
        raise ValueError(f'{settings.out} holds a run already: continue it with --resume '
                         f'{Path(settings.out) / LAST}, or choose another --out (or --overwrite)')
    return settings


def _device_type(requested: str) -> str:
    if requested == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(requested).type


def _prepare(settings: TrainSettings, resume: Optional[str], entry: Optional[Dict[str, Any]],
             world: World) -> Trainer:
    say = print if world.is_main else (lambda text: None)
    device = resolve_device(settings.device, world.local_rank)
    precision, notes = resolve_precision(settings.precision, device)
    seed_everything(settings.seed)
    if settings.deterministic:
        make_deterministic()
    if resume is not None:
        model, _ = load_checkpoint(resume)
        model.train()
        notes += [f'resuming after epoch {entry["epoch"]} (step {entry["step"]}) of {resume}']
    else:
        model, load_notes = start_model(settings)
        notes += load_notes
    train_items, val_items, split = split_items(settings, entry['split'] if entry else None)
    data = build_data(settings, model.config, train_items, val_items)
    for note in notes:
        say(f'{PROG}: {note}')
    val_sizes = [f'{len(d)} {kind}' for kind, d in (('class samples', data.val_cls),
                                                    ('pairs', data.val_box)) if d is not None]
    say(f'{PROG}: task {settings.task}, model {model.config.name} '
        f'({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, '
        f'{"multi-label" if model.config.multi_label else "single-label"}), {precision.name} on '
        f'{device}, {world.size} process(es); {len(train_items)} training sequences '
        f'({len(data.train)} samples per epoch), {len(val_items)} validation sequences '
        f'({", ".join(val_sizes) or "no validation"})')
    return Trainer(settings, model, data, split, world, device, precision, Path(settings.out),
                   print_fn=say, resume=entry)


def _evaluate(explicit: Dict[str, Any]) -> int:
    if 'data_dir' not in explicit:
        raise ValueError('--evaluate needs --data_dir')
    settings = resolve({k: v for k, v in explicit.items()
                        if k not in ('evaluate', 'eval_split')})
    device = resolve_device(settings.device)
    precision, notes = resolve_precision(settings.precision, device)
    for note in notes:
        print(f'{PROG}: {note}')
    evaluate_checkpoint(explicit['evaluate'], settings.data_dir, Path(settings.out),
                        split=explicit.get('eval_split', 'all'),
                        batch_size=settings.batch_size, num_workers=settings.num_workers,
                        max_samples_per_seq=settings.max_samples_per_seq, device=device,
                        precision=precision.name)
    return 0


class Stopped(KeyboardInterrupt):
    """SIGTERM during training, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


def _stop_on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    raise Stopped()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    SIGINT (Ctrl-C) and SIGTERM stop the run with a line saying how to resume it (exit 130 and
    143): ``last.pth`` holds the last finished epoch.
    """
    parser = build_parser()
    explicit = _explicit(parser.parse_args(argv))
    try:
        if 'evaluate' in explicit:
            return _evaluate(explicit)
        resume = explicit.pop('resume', None)
        entry = None if resume is None else read_training_entry(resume)
        settings = _settings(explicit, entry, resume)
    except USAGE_ERRORS as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return 2
    world = init_distributed(_device_type(settings.device))
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if in_main_thread else None
    try:
        try:
            trainer = _prepare(settings, resume, entry, world)
        except USAGE_ERRORS as exc:
            print(f'{PROG}: error: {exc}', file=sys.stderr)
            return 2
        state = trainer.fit()
        if world.is_main:
            best = state.best
            print(f'{PROG}: {state.epoch} epochs, {state.step} steps; checkpoints in '
                  f'{settings.out} (best {best.metric} {best.value} at epoch {best.epoch})')
        return 0
    except KeyboardInterrupt as stop:
        last = Path(settings.out) / LAST
        where = (f'continue with --resume {last} (it holds the last finished epoch)'
                 if last.is_file() else 'no epoch had finished: nothing to resume')
        if world.is_main:
            print(f'\n{PROG}: stopped by {"SIGTERM" if isinstance(stop, Stopped) else "SIGINT"};'
                  f' {where}', file=sys.stderr)
        return 143 if isinstance(stop, Stopped) else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        close_distributed()


if __name__ == '__main__':
    sys.exit(main())
