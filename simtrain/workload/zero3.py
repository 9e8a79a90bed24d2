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
- (stack.zero3_fetch_sync) the collectives themselves cannot hide behind the passes as a
  layer-ahead prefetch would: `fetch_sub_module` waits for its gathers and calls
  `_synchronize_communication` (`torch.cuda.synchronize()`, stage3.py:357-411, 483-491) before
  the sub-module's kernels are even launched, and `_allgather_param` synchronizes again
  (partition_parameters.py:611). The next tensor is prefetched (`prefetch_next_sub_modules`,
  stage3.py:312-334, one tensor: each is over stage3_prefetch_bucket_size) only while the
  gathered parameters number fewer than stage3_max_live_parameters (default 1e9,
  constants.py:86-87), so it overlaps one sub-module's compute at most; a gradient's
  reduce-scatter (launched from the next gradient's hook, stage3.py:1431-1445, 1689-1712)
  overlaps only the next sub-module's backward, whose successor's fetch drains the device.
  `fetch_plan` gives the engine (simtrain.engine.zero3sync) each tensor's fetch.
- the tensors that stay whole (biases, norm weights) are nonetheless partitioned after every
  backward (`_partition_all_parameters`, stage3.py:2553-2557) and gathered again after every
  optimizer step (`_post_step`, stage3.py:2339-2344) by `_allgather_params`
  (partition_parameters.py:638-700): one list of world-size narrows and the backend's
  copy-backs for all of them, then, for every such tensor, a Python loop over the ranks whose
  part lies in it (`if param_start < param_size`) running narrow, view, narrow and copy_:
  `zero3_persist_rank_ops` host operations per (tensor, rank), with the GPU idle
  (`persistent_gather_seconds`, charged to the optimizer step).
Not counted: the embeddings (two tensors against the layers' four per layer); with more
than one micro-batch per step, the whole tensors' per-tensor gathers in the later
micro-batches' forwards.
The stack keys: zero3_gather_rank_ops, zero3_reduce_rank_ops, zero3_persist_numel,
zero3_reuse_numel, zero3_fetch_sync, zero3_max_live_numel; each operation costs
`stack.launch_us`. (Python-level bookkeeping per rank, such as DeepSpeed's `get_rank` call
in the loop, is not counted.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def _kept(tensors: list[tuple[int, float]], par: ParallelConfig, stack: Stack) -> list[bool]:
    """Whether each tensor stays gathered from the recomputed forward to its own backward:
    between the two uses the trace runs the later tensors' forward and backward, 2 x their
    elements, which must stay under stage3_max_reuse_distance."""
    return [par.recompute == "full" and 2 * sum(m for _, m in tensors[i + 1:]) < stack.zero3_reuse_numel
            for i in range(len(tensors))]


def calls_per_segment(model: ModelConfig, par: ParallelConfig, stack: Stack) -> dict[tuple[str, int], tuple[int, int]]:
    """Collective calls per layer and micro-batch that go through the list path, by (phase,
    segment): (gathers, reduce-scatters). The forward's gathers (a full recomputation
    repeats them); in the backward, a gather of each tensor not kept since the recomputed
    forward and one reduce-scatter per gathered tensor."""
    tensors = layer_tensors(model, par.tp)
    kept = _kept(tensors, par, stack)
    calls = {(ph, seg): [0, 0] for ph in ("fwd", "bwd") for seg in (0, 1)}
    for i, (seg, n) in enumerate(tensors):
        if n < stack.zero3_persist_numel:
            continue
        calls[("fwd", seg)][0] += 1
        calls[("bwd", seg)][1] += 1  # its gradient's reduce-scatter
        if not kept[i]:
            calls[("bwd", seg)][0] += 1
    return {k: (g, r) for k, (g, r) in calls.items()}


@dataclass(frozen=True)
class Fetch:
    """One gathered tensor of a layer, in forward order, as a synchronized fetch handles it."""

    seg: int
    numel: float  # elements on this TP rank (gathered over DP x CP in the parameters' dtype)
    share: float  # its sub-module's part of the segment's compute: its GEMM's, numel / segment's
    kept: bool  # kept from the recomputed forward to its backward: not gathered again
    prefetch: tuple[bool, bool, bool]  # forward, recomputed forward, backward: its fetch prefetches the next


def fetch_plan(model: ModelConfig, par: ParallelConfig, stack: Stack) -> tuple[Fetch, ...]:
    """The gathered tensors of one layer (over stage3_param_persistence_threshold), in forward
    order. A fetch prefetches the next tensor to gather when the parameters then gathered
    (this one, plus those kept for their backward: in the recomputed forward the kept ones
    before it, in the backward the kept ones whose backward is still to come) number fewer
    than stage3_max_live_parameters (`prefetch_next_sub_modules`: strict <)."""
    all_tensors = layer_tensors(model, par.tp)
    kept_all = _kept(all_tensors, par, stack)
    rows = [(seg, n, k) for (seg, n), k in zip(all_tensors, kept_all) if n >= stack.zero3_persist_numel]
    seg_total = {seg: sum(n for s, n, _ in rows if s == seg) for seg in (0, 1)}
    live = stack.zero3_max_live_numel
    out = []
    for i, (seg, n, k) in enumerate(rows):
        held_before = sum(m for _, m, kk in rows[:i] if kk)
        f = n < live
        r = n + held_before < live
        b = n + held_before < live
        out.append(Fetch(seg, n, n / seg_total[seg], k, (f, r, b)))
    return tuple(out)


def gather_host_seconds(par: ParallelConfig, stack: Stack) -> tuple[float, float]:
    """A gather's host time (before, after) its NCCL call: the narrow of DeepSpeed's loop
    over the ranks (one operation per rank) precedes `all_gather`, the backend's copy-backs
    follow it while the collective runs."""
    per = par.dp * par.cp * stack.launch_us * 1e-6
    before = min(1.0, stack.zero3_gather_rank_ops)
    return before * per, (stack.zero3_gather_rank_ops - before) * per


def persistent_tensors(model: ModelConfig, tp: int, stack: Stack) -> list[float]:
    """Elements (on this TP rank) of one layer's tensors under the persistence threshold:
    the small biases of `layer_tensors` and the two norms' weights (and a LayerNorm's
    biases), hidden_size each."""
    small = [n for _, n in layer_tensors(model, tp) if n < stack.zero3_persist_numel]
    norms = 2 * (2 if model.norm == "layernorm" else 1)
    return small + [float(model.hidden_size)] * norms


def ranks_holding(numel: float, ranks: int) -> int:
    """Ranks whose partition of a `numel`-element tensor starts inside it: DeepSpeed pads the
    tensor to a multiple of the ranks, each holds ceil(numel / ranks) elements."""
    part = math.ceil(numel / ranks)
    return math.ceil(numel / part)


def persistent_gather_seconds(model: ModelConfig, par: ParallelConfig, stack: Stack, layers: int) -> float:
    """Host time of `_post_step`'s gather of the whole tensors of `layers` layers: 2 ops per
    rank for the list (narrow, copy-back), one copy of each tensor's own part, and
    `zero3_persist_rank_ops` per tensor and rank holding part of it; `launch_us` each."""
    if stack.zero3_persist_rank_ops <= 0 or layers <= 0 or par.zero != 3 or par.dp * par.cp <= 1:
        return 0.0
    n = par.dp * par.cp
    tensors = persistent_tensors(model, par.tp, stack) * layers
    ops = 2 * n + len(tensors) + stack.zero3_persist_rank_ops * sum(ranks_holding(m, n) for m in tensors)
    return ops * stack.launch_us * 1e-6


def sync(par: ParallelConfig, stack: Stack) -> bool:
    """The engine runs DeepSpeed's synchronized per-tensor fetches (simtrain.engine.zero3sync)."""
    return par.zero == 3 and par.dp * par.cp > 1 and stack.zero3_fetch_sync


def host_seconds(par: ParallelConfig, stack: Stack, gathers: int, reduces: int) -> float:
    """Host time of list-path collectives: per rank of the ZeRO-3 group (DP x CP ranks),
    `zero3_gather_rank_ops` operations in each gather and `zero3_reduce_rank_ops` in each
    reduce-scatter, each `launch_us`."""
    ops = gathers * stack.zero3_gather_rank_ops + reduces * stack.zero3_reduce_rank_ops
    return par.dp * par.cp * ops * stack.launch_us * 1e-6


def applies(par: ParallelConfig, stack: Stack) -> bool:
    return (par.zero == 3 and par.dp * par.cp > 1
            and (stack.zero3_gather_rank_ops > 0 or stack.zero3_reduce_rank_ops > 0))
