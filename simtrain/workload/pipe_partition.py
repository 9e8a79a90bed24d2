"""DeepSpeed's TP-partitioned pipeline tensors (stack.pipe_partitioned): the work around
each stage boundary's send and receive, per micro-batch, on one TP rank.

DeepSpeed's pipeline engine with tensor parallelism sends every boundary tensor (the
activation forward, its gradient backward) as a PartitionedTensor: each TP rank sends only
its 1/TP slice (deepspeed/runtime/pipe/engine.py @v0.5.4:115-116, is_pipe_partitioned =
is_grad_partitioned = is_model_parallel; simtrain's point-to-point already carries 1/TP),
and the receiver rebuilds the whole tensor with PartitionedTensor.full()
(deepspeed/runtime/utils.py @v0.5.4:693-721) before it can compute:
  - a zero-filled flat buffer of the whole tensor (writes N bytes, one kernel),
  - its own slice copied in (reads and writes N/TP, one kernel),
  - dist.all_gather from a list of TP views of that buffer: PyTorch's
    ProcessGroupNCCL::allgather of 2021 (torch/lib/c10d/ProcessGroupNCCL.cpp, 1.7-1.10)
    gathers into a new flat tensor (flatten_for_scatter_gather) and copies each of the TP
    parts out to the views (reads and writes N, TP kernels), on the NCCL stream that the
    compute stream then waits for,
  - `.clone()` of the result (reads and writes N, one kernel),
so 5N + 2N/TP bytes and TP + 3 kernels besides the all-gather of N bytes over the TP group.
Per micro-batch, on a stage that receives (not the first) before its forward: one full()
(engine.py:566-571), after _exec_recv_activations' `buffer.clone()` of the received slice
(engine.py:959) and _exec_forward_pass' `inputs.clone()` of it again (engine.py:560);
on a stage that sends forward (not the last) before its backward: two full() calls, the
saved output's data restored (engine.py:652-656) and the received gradient (666-670), both
before torch.autograd.backward (so before the recomputation). The sender's slice is a
`.narrow(...).clone()` (utils.py:686-689, reads and writes N/TP): after the forward on every
stage but the last (engine.py:593), after the backward on every stage but the first
(_exec_send_grads, engine.py:894). The same code in BLOOM's DeepSpeed (bf16-updates
@5ea1c60f8) and in v0.6 (GPT-NeoX 20B's time). Each is on the compute stream's path.
The partition metadata (a handful of int64s sent beside each slice, `.tolist()` on receipt)
and the attention mask some pipe models pass along are left out (tiny or sized apart).
"""

from __future__ import annotations

from dataclasses import dataclass

from simtrain.hardware.devices import Device
from simtrain.workload.compute import memory_time


@dataclass(frozen=True)
class BoundaryWork:
    """Work one TP rank does around one action's boundary tensors for one micro-batch."""

    gathers: int = 0  # TP all-gathers of the whole boundary tensor (N bytes) before the compute
    before_bytes: float = 0.0  # HBM bytes the copies before the compute move
    before_kernels: int = 0
    after_bytes: float = 0.0  # HBM bytes of the sender's slice copy after the compute
    after_kernels: int = 0

    def before_s(self, dev: Device) -> float:
        return memory_time(dev, self.before_bytes, self.before_kernels) if self.before_kernels else 0.0

    def after_s(self, dev: Device) -> float:
        return memory_time(dev, self.after_bytes, self.after_kernels) if self.after_kernels else 0.0


def full_bytes(n: float, tp: int) -> float:
    """HBM bytes one PartitionedTensor.full() moves besides its all-gather (N = whole tensor)."""
    return 5 * n + 2 * n / tp


def full_kernels(tp: int) -> int:
    return tp + 3


def boundary_work(kind: str, n: float, tp: int, first: bool, last: bool) -> BoundaryWork:
    """The forward ("F") or backward ("B") of one micro-batch on a stage with whole boundary
    tensor of `n` bytes; `first` / `last`: the stage has no predecessor / successor. Nothing
    without tensor parallelism (DeepSpeed partitions only when TP > 1)."""
    if tp <= 1 or n <= 0:
        return BoundaryWork()
    part = 2 * n / tp  # one copy of a 1/TP slice
    if kind == "F":
        recv = BoundaryWork(1, 2 * part + full_bytes(n, tp), 2 + full_kernels(tp)) if not first else BoundaryWork()
        return BoundaryWork(recv.gathers, recv.before_bytes, recv.before_kernels,
                            0.0 if last else part, 0 if last else 1)
    if kind == "B":
        g, b, k = (0, 0.0, 0) if last else (2, 2 * full_bytes(n, tp), 2 * full_kernels(tp))
        return BoundaryWork(g, b, k, 0.0 if first else part, 0 if first else 1)
    raise ValueError(f"boundary_work: kind {kind!r} is not F or B")
