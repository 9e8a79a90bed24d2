"""Host time of ZeRO-3 as DeepSpeed v0.3.x ran it: one collective per parameter tensor,
each through a Python list of world-size views.

DeepSpeed v0.3.13 (2021-03-16; deepspeed/runtime/zero/partition_parameters.py and
stage3.py). ZeRO-3 first shipped in v0.3.12 (2021-03-12); v0.3.12 to v0.3.15 (2021-04-19)
all run this path, and Megatron-LM SC21's ZeRO-3 comparison appeared on 2021-04-09:
- each sub-module's forward and backward pre-hook fetches its parameters
  (`fetch_sub_module`) and prefetches the next ones, one `_allgather_param` per tensor:
  `torch.cuda.synchronize()`, a Python loop of `flat_tensor.narrow(...)` over every rank
  (`for i in range(self.world_size)`), then `torch.distributed.all_gather(partitions, ...)`
  into that list. PyTorch's NCCL backend of the time gathered into a flattened buffer and
  copied it back one `copy_` per output tensor (ProcessGroupNCCL::allgather; in-place
  `_all_gather_base` only came in May 2021, pytorch/pytorch#57769). Host work: two
  tensor operations per rank (the narrow and the copy) in every gather.
- gradients are reduce-scattered per tensor the same way (`_reduce_scatter_gradient`: a
  loop over the ranks taking `param.grad.view(-1).narrow(...)`, then `reduce_scatter` from
  that list, which the backend flattens with one copy per rank): three per rank.
- the synchronize before each gather and `_synchronize_communication` (a
  `torch.cuda.synchronize()`) before each sub-module drain the GPU, so the host's loop over
  the ranks cannot run ahead of the GPU: its time adds to the pass (an "host" Op, kernels 0).
- parameters under `stage3_param_persistence_threshold` (default 100,000 elements: biases,
  norm weights) stay whole and are never gathered; a gathered parameter is kept rather than
  released when the trace says it is used again within `stage3_max_reuse_distance`
  (default 1e9) elements of other sub-modules' parameters: with full recomputation, a
  layer's last linears between its recomputed forward and their own backward.
Not counted: the embeddings (two tensors against the layers' four per layer), the per-tensor
collectives' own latency (overlapped on DeepSpeed's fetch stream with the host loop).
The stack keys: zero3_gather_rank_ops, zero3_reduce_rank_ops, zero3_persist_numel,
zero3_reuse_numel; each operation costs `stack.launch_us`. (Python-level bookkeeping per
rank, such as DeepSpeed's `get_rank` call in the loop, is not counted.)
"""

from __future__ import annotations

from simtrain.scenario.config import ParallelConfig
from simtrain.scenario.models import ModelConfig, attention_linears
from simtrain.scenario.stack import Stack


def layer_tensors(model: ModelConfig, tp: int) -> list[tuple[int, float]]:
    """(segment, elements on this TP rank) of one dense layer's parameter tensors that a
    sub-module fetch gathers, in forward order: the attention linears, the MLP's up and
    down projections (Megatron fuses a gated MLP's two inputs in one tensor), and their
    biases where the model has them. Norm weights are never large enough to be gathered."""
    out: list[tuple[int, float]] = []
    for _name, k, n, split in attention_linears(model):
        width = n // tp if split else n
        out.append((0, float(k * width)))
        if model.bias:
            out.append((0, float(width)))
    ffn = model.intermediate_size // tp
    up = (2 if model.mlp == "gated" else 1) * ffn
    out.append((1, float(model.hidden_size * up)))
    if model.bias:
        out.append((1, float(up)))
    out.append((1, float(ffn * model.hidden_size)))
    if model.bias:
        out.append((1, float(model.hidden_size)))
    return out


def calls_per_segment(model: ModelConfig, par: ParallelConfig, stack: Stack) -> dict[tuple[str, int], tuple[int, int]]:
    """Collective calls per layer and micro-batch that go through the list path, by (phase,
    segment): (gathers, reduce-scatters). The forward's gathers (a full recomputation
    repeats them); in the backward, a gather of each tensor not kept since the recomputed
    forward and one reduce-scatter per gathered tensor."""
    tensors = layer_tensors(model, par.tp)
    calls = {(ph, seg): [0, 0] for ph in ("fwd", "bwd") for seg in (0, 1)}
    for i, (seg, n) in enumerate(tensors):
        if n < stack.zero3_persist_numel:
            continue
        calls[("fwd", seg)][0] += 1
        calls[("bwd", seg)][1] += 1  # its gradient's reduce-scatter
        # between the recomputed forward's use and its own backward the trace runs the
        # later tensors' forward and backward: 2 x their elements
        later = 2 * sum(m for _, m in tensors[i + 1:])
        kept = par.recompute == "full" and later < stack.zero3_reuse_numel
        if not kept:
            calls[("bwd", seg)][0] += 1
    return {k: (g, r) for k, (g, r) in calls.items()}


def host_seconds(par: ParallelConfig, stack: Stack, gathers: int, reduces: int) -> float:
    """Host time of list-path collectives: per rank of the ZeRO-3 group (DP x CP ranks),
    `zero3_gather_rank_ops` operations in each gather and `zero3_reduce_rank_ops` in each
    reduce-scatter, each `launch_us`."""
    ops = gathers * stack.zero3_gather_rank_ops + reduces * stack.zero3_reduce_rank_ops
    return par.dp * par.cp * ops * stack.launch_us * 1e-6


def applies(par: ParallelConfig, stack: Stack) -> bool:
    return (par.zero == 3 and par.dp * par.cp > 1
            and (stack.zero3_gather_rank_ops > 0 or stack.zero3_reduce_rank_ops > 0))
