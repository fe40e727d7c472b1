"""Training a per-style generator (:class:`styler.training.trainer.Trainer`): data, losses,
validation, run folders, checkpoints and resuming, multi-process training."""
