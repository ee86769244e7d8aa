"""tseg-bench's PyTorch eager row: a tseg checkpoint run by PyTorch itself, as a plugin.

The rest of tseg-bench never imports torch; :mod:`tseg.benchmarks.rows` imports this module
only when ``--checkpoint`` is given. The interface it uses: :func:`load_eager` -> :class:`EagerModel`,
whose ``runner(size, batch)`` returns a callable that runs one batch, and ``flops(size)``
the FLOPs of one image (a :class:`~tseg.benchmarks.flops.FlopCount`) counted by
``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs,
as the ONNX count; its coverage of ops differs slightly: it also counts e.g. batch-norm-free
matmuls inside attention, none of which tseg's models have).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tseg.benchmarks.flops import FlopCount, conv_effective_flops
from tseg.runtime.errors import TsegError
from tseg.train.checkpoints import load_checkpoint, model_from_checkpoint

DEVICES = ("cpu", "cuda")


@dataclass
class EagerModel:
    """A checkpoint's model in eval mode on a device.

    Attributes:
        path: the checkpoint.
        model: the ``nn.Module``.
        device: "cpu" or "cuda".
        name: the architecture's registry name.
        num_classes: C.
        spec: the checkpoint's ``ModelSpec`` (classes, mean, std, input_size: what preprocessing needs).
    """

    path: Path
    model: torch.nn.Module
    device: str
    name: str
    num_classes: int
    spec: object = None
    threads: int | None = None

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, h, w) float32 preprocessed images -> (N, C, h', w') float32 logits on the host."""
        with torch_threads(self.threads), torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
            out = out["out"] if isinstance(out, dict) else out
        return out.float().cpu().numpy()

    def runner(self, size: int, batch: int):
        """A callable running one (batch, 3, size, size) forward (no_grad; synchronised on CUDA).

        The input is made once on the device: host-to-device copies are not timed here, while
        ONNX Runtime rows on a GPU copy their input in and the logits out on every run.
        """
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, size, size, generator=generator).to(self.device)
        model, cuda, threads = self.model, self.device == "cuda", self.threads

        def run() -> np.ndarray:
            with torch_threads(threads), torch.inference_mode():
                out = model(x)
                out = out["out"] if isinstance(out, dict) else out
            if cuda:
                torch.cuda.synchronize()
            return out

        return run

    def flops(self, size: int) -> FlopCount:
        """FLOPs of one (1, 3, size, size) forward: every tap by torch's flop counter, and ``effective``
        less the convolution taps on zero padding (worked out per ``nn.Conv2d`` as tseg's ONNX count does)."""
        from torch.utils.flop_counter import FlopCounterMode

        padding = 0

        def hook(module, inputs, output) -> None:
            nonlocal padding
            if isinstance(module.padding, str):  # "same" / "valid": counted as every tap
                return
            data, out, weight = list(inputs[0].shape), list(output.shape), list(module.weight.shape)
            attributes = {"strides": module.stride, "dilations": module.dilation,
                          "pads": [*module.padding, *module.padding]}
            nominal = 2 * math.prod(out) * math.prod(weight[1:])
            padding += nominal - conv_effective_flops(data, out, weight, attributes)

        handles = [m.register_forward_hook(hook) for m in self.model.modules() if isinstance(m, torch.nn.Conv2d)]
        counter = FlopCounterMode(display=False)
        try:
            with counter, torch.inference_mode():
                self.model(torch.zeros(1, 3, size, size, device=self.device))
        finally:
            for handle in handles:
                handle.remove()
        total = int(counter.get_total_flops())
        return FlopCount(total, effective=total - padding)


def check_checkpoint(checkpoint: str | Path) -> tuple[str, ...]:
    """Refuses, before any timing, a file that is not a loadable tseg checkpoint.

    Returns:
        Its class names, in label order (checked against a --coco split before any timing).

    Raises:
        TsegError: unreadable, not a tseg checkpoint, or a model that cannot be built from it.
    """
    _, spec = model_from_checkpoint(load_checkpoint(checkpoint), source=str(checkpoint))
    return tuple(spec.classes)


def load_eager(checkpoint: str | Path, *, device: str, threads: int | None) -> EagerModel:
    """Loads a tseg checkpoint for eager timing.

    Args:
        checkpoint: a ``best.pt`` / ``last.pt`` written by tseg-train.
        device: "cpu" or "cuda".
        threads: torch's intra-op threads (``torch.set_num_threads``), as ONNX Runtime's; None: torch's default.

    Raises:
        TsegError: not a tseg checkpoint, an unknown device, or CUDA not available to torch.
    """
    if device not in DEVICES:
        raise TsegError(f"the PyTorch eager row runs on {' or '.join(DEVICES)}, not {device}")
    if device == "cuda" and not torch.cuda.is_available():
        raise TsegError("PyTorch eager on cuda: torch.cuda.is_available() is False (a CPU build of torch, or no GPU)")
    payload = load_checkpoint(checkpoint)
    model, spec = model_from_checkpoint(payload, source=str(checkpoint))
    model = model.eval().to(device)
    return EagerModel(Path(checkpoint), model, device, spec.name, len(spec.classes), spec, threads)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block only (no-op when None or equal).

    torch's thread count is process-wide: left changed, it would alter every later torch
    computation in the process (a training run after a benchmark in the same process would
    sum in another order and no longer reproduce).
    """
    previous = torch.get_num_threads()
    change = threads is not None and threads != previous
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(previous)
