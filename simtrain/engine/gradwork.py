"""The per-step gradient work a plan implies, priced on its device: the gradient-
accumulation pass after each micro-batch's backward (stack.grad_accum_bytes), Megatron-Core
DDP's default bucket, and the stack's passes over its gradient buffer
(stack.grad_buffer_passes). The engine (simtrain.engine.actions, dpstream) runs them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simtrain.workload.compute import memory_time
from simtrain.workload.costs import grad_buffer_time, grad_pass_bytes
from simtrain.workload.kernels import GRAD_PASSES

if TYPE_CHECKING:
    from simtrain.engine.plan import Plan


def tensors_per_layer(model) -> int:
    """Parameter tensors of one layer, one accumulation kernel each (two where the gradient
    is first converted to fp32): the fused QKV, output, fc1 and fc2 weights (Megatron's four
    linears; a gated MLP's gate and up are one fc1), their biases where the model has them,
    and the two norms' weights, plus their biases for LayerNorm. A GPT layer: 12; a Llama
    layer (no biases, RMSNorm): 6."""
    return 4 + (4 if model.bias else 0) + 2 + (2 if model.norm == "layernorm" else 0)


def grad_accum_seconds(plan: "Plan") -> tuple[dict[int, float], bool]:
    """Per virtual stage: the memory-bound gradient-accumulation pass the stack runs after a
    micro-batch's backward (stack.grad_accum_bytes, or grad_accum_bytes_bf16 in bf16), over
    the parameters the stage holds on one rank (their shard under ZeRO-3); and whether the
    first micro-batch runs it too. Autograd's AccumulateGrad (grad_accum_bytes) takes the
    first micro-batch's gradient as it is and adds only the later ones; an explicit add into
    an fp32 buffer (grad_accum_bytes_bf16) runs every time. Empty when the stack has none."""
    stack = plan.scenario.stack
    bf16 = plan.scenario.training.precision == "bf16" and stack.grad_accum_bytes_bf16 >= 0
    per_param = stack.grad_accum_bytes_bf16 if bf16 else stack.grad_accum_bytes
    if per_param <= 0:
        return {}, False
    kernels = 2 if bf16 else 1  # bf16: .to(fp32) then add_
    L = plan.layout
    shards = L.dp * L.cp if plan.scenario.parallel.zero >= 3 else 1  # FSDP accumulates its shard
    return ({st.index: memory_time(plan.device, per_param * st.params / shards, kernels * tensors_per_layer(plan.scenario.model) * max(1, st.layers))
             for st in plan.stages}, bf16)


def bucket_params(dp: int) -> float:
    """Megatron-Core DDP's default gradient bucket, in parameters: max(40M, 1M x DP)
    (megatron/core/distributed/distributed_data_parallel.py@core_r0.8.0:51-53)."""
    return max(40e6, 1e6 * dp)


@dataclass(frozen=True)
class GradBufferPasses:
    """The stack's passes over its gradient buffer (stack.grad_buffer_passes), over every
    gradient a rank holds (not the optimizer's shard), at training.grad_precision bytes."""

    zero_s: dict[int, float]  # per pipeline rank: the once-per-buffer passes (zeroing) at the step's start
    per_byte_s: float  # the per-bucket passes (NaN-check norm, 1/DP scaling): seconds per gradient byte
    per_bucket_s: float  # their fixed GPU cost per bucket (one kernel per pass)

    def bucket_s(self, nbytes: float) -> float:
        """Compute-stream time of one bucket's passes, run before its reduction."""
        return nbytes * self.per_byte_s + self.per_bucket_s if nbytes > 0 else 0.0


def grad_buffer_passes(plan: "Plan") -> GradBufferPasses | None:
    """The stack's gradient-buffer passes priced on the plan's device; None when it has
    none, or under ZeRO-3 (FSDP shards its gradients: not Megatron-Core's buffer). The
    engine runs the zeroing before the first forward and each bucket's passes on the compute
    stream ahead of its reduction (simtrain.engine.dpstream)."""
    passes = plan.scenario.stack.grad_buffer_passes
    if not passes or plan.scenario.parallel.zero >= 3:
        return None
    once = tuple(p for p in passes if not GRAD_PASSES[p].per_bucket)
    each = tuple(p for p in passes if GRAD_PASSES[p].per_bucket)
    dev, gb, place = plan.device, plan.grad_bytes, plan.schedule.placement
    zero = {r: grad_buffer_time(dev, sum(st.params for st in plan.stages if place[st.index] == r), gb, once)
            for r in range(plan.layout.pp)} if once else {}
    per_byte = memory_time(dev, grad_pass_bytes(each, gb) / gb, 0)  # traffic per gradient byte, no kernel
    return GradBufferPasses(zero, per_byte, memory_time(dev, 0.0, len(each)))
