"""One code path for one process and for torchrun (DDP): rank, device, reductions.

Under torchrun (RANK/WORLD_SIZE set) the process group uses NCCL on CUDA and
gloo on the CPU; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tseg.runtime.errors import TsegError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank among world_size, and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        """Sums floats across processes (identity in one process)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_array(self, array):
        """Sums a NumPy int64 array (e.g. a confusion matrix) across processes."""
        if not self.distributed:
            return array
        tensor = torch.from_numpy(array).to(self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise TsegError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise TsegError("device 'cuda' requested but PyTorch sees no CUDA GPU")
    if name != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: str) -> DistContext:
    """Joins the torchrun process group when launched by torchrun, else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = _pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, device=torch_device)


def shutdown_distributed() -> None:
    """Leaves the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
