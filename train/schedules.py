"""Learning-rate schedules as pure functions of the optimizer step.

Every schedule ramps linearly from 0 to the peak over ``warmup_steps`` (the notes'
"gradual warm-up"), then holds (constant) or decays to ``min_lr`` by the last step:
cosine, polynomial (power 0.9, DeepLab's "poly") or step-wise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tseg.runtime.errors import TsegError

SCHEDULES = ("constant", "warmup-cosine", "warmup-poly", "warmup-step")


@dataclass(frozen=True)
class LrSchedule:
    """A learning-rate schedule over ``total_steps`` optimizer steps.

    Attributes:
        name: one of SCHEDULES.
        peak_lr: the LR at the end of the warm-up.
        total_steps: optimizer steps in the whole run; the last is total_steps - 1.
        warmup_steps: steps of the linear ramp 0 -> peak (0: start at the peak).
        min_lr: the LR the decays end at.
        poly_power: exponent of the poly decay.
        step_every: steps between drops of the step decay (default: a third of the decay).
        step_gamma: factor of each drop.
    """

    name: str
    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0
    poly_power: float = 0.9
    step_every: int | None = None
    step_gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise TsegError(f"unknown LR schedule {self.name!r}; valid: {', '.join(SCHEDULES)}")
        if self.total_steps < 1 or self.peak_lr <= 0 or not 0 <= self.min_lr <= self.peak_lr:
            raise TsegError(
                f"need total_steps >= 1 and 0 <= min_lr <= peak_lr > 0, got {self.total_steps},"
                f" {self.min_lr}, {self.peak_lr}"
            )
        if not 0 <= self.warmup_steps < self.total_steps:
            raise TsegError(
                f"warm-up of {self.warmup_steps} steps must be shorter than the training"
                f" ({self.total_steps} steps)"
            )

    def __call__(self, step: int) -> float:
        """The LR for optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        if self.name == "constant":
            return self.peak_lr
        decay_steps = max(self.total_steps - 1 - self.warmup_steps, 1)
        done = min(step - self.warmup_steps, decay_steps)
        progress = done / decay_steps
        span = self.peak_lr - self.min_lr
        if self.name == "warmup-cosine":
            return self.min_lr + span * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.name == "warmup-poly":
            return self.min_lr + span * (1.0 - progress) ** self.poly_power
        every = self.step_every or max(decay_steps // 3, 1)
        return max(self.peak_lr * self.step_gamma ** (done // every), self.min_lr)
