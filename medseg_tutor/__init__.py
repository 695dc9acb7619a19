"""Modules:

- `medseg_tutor.train.engine`: One training loop for every method of the package: a step hook (what the loss is), an evaluate hook (what "better" means) and callbacks (schedules, EMA, ...) around SGD/AdamW, poly and warm-up + cosine schedules, bf16/fp16, channels_last, torch.compile, DDP, best-on-validation selection, CSV logs and curves, checked checkpoints with exact resume, a time budget, and runs that stop loudly when the loss stops being a number."""

__version__ = "0.1.0"
