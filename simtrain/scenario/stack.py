"""Software stacks: what the training framework does with the model, as data.

A stack file (`stacks/NAME.toml`, chosen by `[cluster] stack = "NAME"` or a path) says which
kernels the framework fuses, its host cost per kernel launch and per collective call, its
FSDP hook cost, its optimizer implementation, its memory allowances and its sustained share
of the device's kernel throughput, each with its source. Its `[defaults]` tables set
scenario keys (attention kernel, overlaps, ...) that a scenario may still set itself.
A scenario's own `[stack]` table overrides single stack values (`--set stack.launch_us=4`).

Precedence, lowest first: dataclass defaults < stack `[defaults]` < scenario file < --set.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from simtrain.scenario.errors import SimtrainError, bad
from simtrain.scenario.fields import _suggest, parse_dataclass
from simtrain.scenario.files import read_toml, resolve_path

DEFAULT_STACK = "megatron-core"
FUSION = ("fused", "unfused")


@dataclass(frozen=True)
class Stack:
    name: str = DEFAULT_STACK
    description: str = ""
    source: str = ""  # where the stack's choices and constants come from
    # Kernels (simtrain.workload.kernels): "fused" = one kernel per operator near streaming
    # traffic (Apex/Transformer Engine/torch.compile); "unfused" = the eager PyTorch ops of a
    # plain implementation (e.g. Hugging Face's LlamaRMSNorm: 7 kernels, fp32 intermediates).
    norm: str = "fused"  # RMSNorm (LayerNorm is one kernel in every framework)
    # What a fused norm keeps for its backward (simtrain.workload.activations): "input" (its
    # input and one fp32 scale per token: Apex's and Transformer Engine's default) or
    # "output" (its output, which the next GEMM keeps anyway, and the scale: the backward
    # rebuilds the normalized input from it). "output" is Apex's memory-efficient kernel,
    # FusedRMSNormAffineFunction with memory_efficient=True (`if ctx.memory_efficient:
    # ctx.save_for_backward(output, weight_, invvar)`), Megatron-Core's
    # memory_efficient_layer_norm (transformer_config.py, default False): the norms' inputs,
    # the residual stream before each norm, are then kept by no one, 2 x 2h per token and
    # layer (/TP under sequence parallelism). Only a fused kernel has the choice: with
    # norm = "unfused" the eager ops keep what autograd saves of each, whatever this says.
    norm_saves: str = "input"
    rope: str = "fused"  # rotary embedding on Q and K ("complex": Meta Llama's view_as_complex form)
    activation: str = "fused"  # SwiGLU / bias-GELU in one kernel
    bias_dropout_add: str = "fused"  # GPT-style bias + dropout + residual add in one kernel
    softmax: str = "fused"  # unfused attention only: Megatron's scale-mask-softmax kernel
    cross_entropy: str = "unfused"  # loss over the vocabulary: eager fp32 log-softmax or one fused kernel
    # Host time per kernel launch, microseconds: eager PyTorch issues a tiny op every 6.9 us
    # on the H200 host measured here (tools/kernels/README.md); CUDA graphs replay at 0.8 us.
    # A pass whose GPU work is shorter than its launches is launch-bound (small models).
    launch_us: float = 7.0
    # Host and proxy overhead of one NCCL collective call beyond its transfer (launch,
    # stream synchronisation, proxy thread), microseconds. 10 us: NCCL's own tuning model
    # charges a base latency of 6.6-14 us per call by protocol (src/graph/tuning.cc,
    # tools/published/kernels/nccl_tuning_constants.csv), and with it the simulated
    # 8 x H100 all-reduce follows published nccl-tests within 22% from 4 MiB up (test).
    collective_us: float = 10.0
    # PyTorch FSDP pre-forward / pre-backward / post-backward hooks, host microseconds per
    # FSDP unit (one transformer layer) per pass; 0 for frameworks without FSDP hooks.
    fsdp_unit_us: float = 0.0
    # Optimizer kernels: "fused" (one multi-tensor kernel: Apex FusedAdam, torch fused=True,
    # Megatron's distributed optimizer) or "foreach" (torch's default foreach AdamW: several
    # passes over the states; 2.6x slower measured, tools/kernels/README.md).
    optimizer: str = "fused"
    # Adam's first and second moments: "fp32" (4 B each, every mixed-precision recipe) or
    # "bf16" (2 B each: DeepSeek-V3 §3.3.3, "Low-Precision Optimizer States"); fp32 master
    # weights either way (simtrain.workload.memory)
    optimizer_moments: str = "fp32"
    # The optimizer's copy of the weights: "fp32" master weights (4 B, every mixed-precision
    # recipe) or "bf16" (2 B: Apex's DistributedFusedAdam with dtype=bf16 keeps its shard of
    # the parameters, store_params, and both moments in that dtype; "dtype: datatype for
    # optimizer state", apex/contrib/optimizers/distributed_fused_adam.py)
    optimizer_master: str = "fp32"
    # FP8 runs: the experts' activation (SwiGLU) input, the gate and up outputs, cached in
    # FP8 for the backward instead of bf16 (DeepSeek-V3 §3.3.3, "Low-Precision Storage":
    # "we cache the inputs of the SwiGLU operator ... stored in FP8"); Transformer Engine
    # keeps them in bf16
    fp8_moe_act_input: bool = False
    # Share of the benchmarked kernel throughput (GEMMs, fused attention) this stack sustains
    # in a full training step: the stack's kernel choices and tuning beyond what the kernel
    # model knows. 1.0 = as measured in isolation; a calibration may find more than 1 when
    # the kernel model is pessimistic for this stack (at most 2).
    sustained_fraction: float = 1.0
    # Streaming multiprocessors the overlapped tensor-parallel communication kernels take from
    # the GEMM they overlap (Transformer Engine userbuffers, Megatron-Core --tp-comm-overlap),
    # in the field order of NeMo's TransformerLayerTPOverlapCfg: qkv_dgrad, qkv_wgrad,
    # fc1_dgrad, fc1_wgrad, qkv_fprop, proj_dgrad, fc1_fprop, fc2_dgrad, proj_fprop, fc2_fprop.
    # That GEMM runs at (SMs - n) / SMs of its speed (simtrain.workload.ops). Empty: none.
    # Only with TP > 1 and engine.overlap_tp_comm.
    tp_overlap_sms: tuple[int, ...] = ()
    # Memory the framework does not allocate as tensors (GiB): the CUDA context with its
    # module images (~0.5 GiB on Hopper), cuBLAS/cuBLASLt workspaces (32 MiB per handle and
    # stream on Hopper, CUBLAS_WORKSPACE_CONFIG) and NCCL's per-communicator buffers
    # (NCCL_BUFFSIZE = 4 MiB per channel per peer, NCCL docs, times the channels of every
    # TP, CP, PP and DP communicator: of the order of 1 GiB). Default 2 GiB, assumed.
    workspace_gib: float = 2.0
    # PyTorch's caching allocator cannot compact, so reserved memory exceeds allocated
    # memory: reported gaps range from a few percent to "up to 43%" with virtual pipelines
    # and recomputation (STWeaver, arXiv:2507.16274). Default 5% of the allocated bytes, a
    # typical steady-state gap with expandable segments.
    fragmentation: float = 0.05
    # Bytes per logit (per token and vocabulary entry on the rank) the loss holds at its
    # peak on the last stage. 6: Megatron's vocab-parallel cross-entropy, fused or not
    # (megatron/core/fusions/fused_cross_entropy.py: the bf16 logits, 2, upcast to fp32 and
    # worked in place into the softmax it saves, 4). 10: PyTorch eager
    # F.cross_entropy(logits.float()) as torchtitan and Composer call it: the bf16 logits, an
    # fp32 copy and log_softmax's fp32 output saved for the backward. 2: a loss kernel that
    # reads the bf16 logits and writes their gradient in place (flash-attn's Triton
    # CrossEntropyLoss). The part above 4 is transient; up to 4 is kept until the backward.
    loss_logit_bytes: float = 6.0
    # The vocabulary is padded to a multiple of this times TP, so the output GEMM and the loss
    # run over the padded width: Megatron's --make-vocab-size-divisible-by (default 128;
    # megatron/training/tokenizer/tokenizer.py _vocab_size_with_padding: multiple =
    # make_vocab_size_divisible_by x tensor_model_parallel_size), NeMo's
    # make_vocab_size_divisible_by (128). 1: the vocabulary as the model has it.
    vocab_pad_multiple: int = 1
    # Cross-entropy forward passes over the logits that the trainer runs outside the loss,
    # per micro-batch, as eager PyTorch under bf16 autocast (cross_entropy autocasts to
    # fp32, so each is F.cross_entropy(logits.float()): the "unfused" cross-entropy forward
    # of simtrain.workload.kernels, on the last stage after the micro-batch's backward).
    # 2: Composer's training metrics, LanguageCrossEntropy and LanguagePerplexity, each
    # updated after every micro-batch (stacks/llm-foundry.toml). 0: none.
    train_metric_ce_passes: int = 0
    # Gradient accumulation outside the weight-gradient GEMM: HBM bytes moved per parameter
    # held after every micro-batch's backward (a memory-bound pass on the compute stream).
    # 0: the GEMM accumulates in place (Megatron-Core's gradient_accumulation_fusion) or not
    # modelled. 6: PyTorch autograd's AccumulateGrad adds each new fp16/bf16 gradient into
    # param.grad in place (read 2 + 2, write 2), as DeepSpeed's ZeRO-1 keeps them.
    grad_accum_bytes: float = 0.0
    # The same with training.precision = "bf16", where it differs (< 0: as grad_accum_bytes).
    # 18: DeepSpeed's BF16_Optimizer.update_hp_grads after every backward,
    # hp_grad.add_(lp.grad.to(fp32)): read bf16 2, write and read the fp32 copy 4 + 4, read
    # and write the fp32 accumulator 4 + 4 (deepspeed/runtime/bf16_optimizer.py @5ea1c60f8).
    grad_accum_bytes_bf16: float = -1.0
    # Data-parallel gradient reduction with training.precision = "bf16" under ZeRO-1:
    # "reduce-scatter" (each rank receives the reduced shard it updates) or "all-reduce"
    # (DeepSpeed's pipeline engine with its BF16_Optimizer all-reduces the fp32 gradients of
    # every parameter, _bf16_reduce_grads -> buffered_allreduce_fallback, then each rank
    # updates its shard: deepspeed/runtime/pipe/engine.py @5ea1c60f8).
    dp_reduce_bf16: str = "reduce-scatter"
    # ZeRO-1's all-gather of the updated parameters: "overlapped" with the next step's
    # forward (Megatron's distributed optimizer with overlap_param_gather) or "in-step":
    # inside optimizer.step(), exposed before the step ends (DeepSpeed ZeRO stage 1/2
    # all_gather_partitions, BF16_Optimizer all_gather_dp_groups).
    param_gather: str = "overlapped"
    # DeepSpeed's pipeline engine with TP > 1 sends each stage boundary's tensor as a
    # PartitionedTensor, 1/TP per rank, and the receiver rebuilds the whole tensor before
    # computing: per micro-batch a TP all-gather and copies before the forward (every stage
    # but the first) and two before the backward (every stage but the last), plus the
    # sender's slice copy (simtrain.workload.pipe_partition, deepspeed/runtime/pipe/engine.py
    # @v0.5.4). False: the tensor arrives whole (Megatron's own pipeline). Only with TP > 1.
    pipe_partitioned: bool = False
    # With tied input and output embeddings under pipeline parallelism, the first and the
    # last stage each hold the word embedding; after the flush, before the data-parallel
    # reduction, each TP rank of the one all-reduces its embedding gradient with its
    # counterpart on the other (a group of 2), on the compute stream: DeepSpeed's
    # _exec_reduce_tied_grads (pipe/engine.py @v0.5.4:217-228, module.py:417-421
    # dist.all_reduce(weight.grad); BLOOM's @5ea1c60f8:245-248 the fp32 _hp_grad), in
    # training.grad_precision. False: not modelled.
    tied_grad_allreduce: bool = False
    # Grouped-query attention with K and V expanded to every query head before the attention
    # kernel (Meta Llama / torchtitan `repeat_kv`: expand + reshape materialises a copy; its
    # backward sums the copies): a copy of K and V per layer and pass (simtrain.workload.ops)
    gqa_repeat_kv: bool = False
    # The attention wrapper gathers the tokens of Q, K and V out of the padded batch before a
    # variable-length attention kernel and scatters its output back into it, every layer and
    # pass, whether or not any token is padding: llm-foundry's flash_attn_fn (attn_impl
    # "flash") through flash-attn's bert_padding.unpad_input / pad_input
    # (simtrain.workload.ops; the copies' bytes in simtrain.workload.kernels)
    attention_unpad: bool = False
    # Tensor parallelism through DTensor with sequence-sharded activations (Shard(1)): torch's
    # functional collectives gather and scatter along dim 0 only, so an all-gather along the
    # sequence is followed by torch.cat(torch.chunk(out, tp), dim=1) and a reduce-scatter is
    # preceded by the inverse chunk + cat (torch/distributed/_functional_collectives.py,
    # all_gather_tensor / reduce_scatter_tensor): one copy of the full activation per TP
    # collective. Only without overlapped TP communication: async TP's fused ops take the
    # layout (dropped when engine.overlap_tp_comm is on; simtrain.scenario.config)
    tp_shard_dim_copies: bool = False
    # PyTorch's async TP (micro-pipeline TP, torch/distributed/_symmetric_memory,
    # _fused_matmul_reduce_scatter_impl): each rank's partial output chunk is sent to its
    # owner, which sums the TP received chunks in a separate kernel (torch.sum(dim=0)): one
    # reduction over the full tokens x hidden partial output per matmul-reduce-scatter, two
    # per layer and pass (simtrain.workload.ops). Only with async TP: dropped unless
    # engine.overlap_tp_comm is on (simtrain.scenario.config)
    async_tp_reduce: bool = False
    # PyTorch's async TP runs each GEMM beside a sequence-dim TP collective as TP GEMMs of
    # one shard's rows (all-gather-matmul consumes each rank's shard as it arrives,
    # matmul-reduce-scatter produces each destination's chunk: torch/distributed/
    # _symmetric_memory/__init__.py, _pipelined_all_gather_and_consume and
    # _pipelined_produce_and_all2all), through the same GEMM tile model, and copies the local
    # shard into its symmetric buffer first. Only with async TP, like async_tp_reduce
    async_tp_split_gemms: bool = False
    # Whether async TP fuses the backward's input-gradient reduce-scatter of a block's first
    # linears with their GEMM. PyTorch's micro-pipeline TP pass fuses a reduce-scatter only
    # with the matmul that produces its input (torch/_inductor/fx_passes/micro_pipeline_tp.py,
    # _find_producer_matmul: mm, or reshape(mm(reshape))); separate linears on one input
    # (torchtitan's wq, wk, wv and w1, w3) give a sum of matmuls there, so that reduce-scatter
    # runs alone, exposed, with DTensor's sequence-dim copy, and those GEMMs whole
    # (simtrain.workload.ops). Only with async TP, like async_tp_split_gemms
    async_tp_input_grad_fused: bool = True
    # FSDP2 (fully_shard): the all-gather lands in one flat buffer that is copied out into
    # the unsharded parameters on the compute stream (torch/distributed/_composable/fsdp/
    # _fsdp_collectives.py, foreach_all_gather_copy_out: split_with_sizes_copy), once per
    # all-gather of a layer (simtrain.workload.ops). FSDP1's flat parameter needs no copy.
    fsdp_copy_out: bool = False
    # FSDP2's post-backward: each layer's unsharded gradients are copied into the flat
    # reduce-scatter buffer in the reduction dtype (training.grad_precision; fp32 reads 2 B
    # and writes 4 per element) by one torch.cat/_chunk_cat, and the compute stream waits for
    # that copy before the next layer's backward (torch/distributed/_composable/fsdp/
    # _fsdp_collectives.py, foreach_reduce_scatter / foreach_reduce:
    # foreach_reduce_scatter_copy_in, then current_stream.wait_event(copy_in_event) or
    # wait_stream(reduce_scatter_stream)): once per layer and micro-batch (simtrain.workload.ops)
    fsdp_grad_copy_in: bool = False
    # FSDP1 (FullyShardedDataParallel with a FlatParameter per unit): the forward uses the
    # original parameters as autograd-tracked views split out of the unsharded flat parameter
    # (torch.split), so autograd assembles the flat parameter's gradient from the views'
    # gradients with split_with_sizes_backward, one torch.cat in the parameter dtype (bf16:
    # read 2 B, write 2 B per element) on the compute stream, once per unit and micro-batch
    # at the end of its backward (simtrain.workload.ops). ZeRO-2 and -3 (SHARD_GRAD_OP,
    # FULL_SHARD) with DP > 1 only. FSDP2 has no flat parameter (fsdp_grad_copy_in instead).
    fsdp_flat_grad_copy: bool = False
    # The Q, K, V projections (and a gated MLP's gate and up projections) are separate
    # nn.Linear modules reading one input (torchtitan's Attention wq, wk, wv and FeedForward
    # w1, w3): eager autograd sums their input gradients one add per extra consumer
    # (torch/csrc/autograd/input_buffer.cpp, InputBuffer::add -> accumulate: old_var + var),
    # two for Q/K/V and one for gate/up over the tokens x hidden input, in the backward.
    # torch.compile fuses the sum into the next kernel: off on compiled runs.
    separate_projection_grads: bool = False
    # Those linears as their own GEMMs in every pass (torchtitan, compiled or not: Inductor
    # does not merge matmuls), not Megatron's fused linear_qkv / linear_fc1
    separate_projections: bool = False
    # ZeRO-3 through per-tensor collectives on Python lists of world-size views (DeepSpeed
    # v0.3.x; simtrain.workload.zero3): host tensor operations per rank of the ZeRO-3 group
    # in each parameter tensor's gather and in each gradient's reduce-scatter, each
    # `launch_us` and not overlapped with the GPU (DeepSpeed synchronizes the device before
    # each). 0: one flat collective per layer (torch FSDP, later DeepSpeed), no such work.
    zero3_gather_rank_ops: float = 0.0
    zero3_reduce_rank_ops: float = 0.0
    # tensors under this many elements stay whole on every rank and are never gathered
    # (DeepSpeed stage3_param_persistence_threshold)
    zero3_persist_numel: float = 0.0
    # a gathered tensor used again within this many elements of other parameters is kept,
    # not gathered again (DeepSpeed stage3_max_reuse_distance)
    zero3_reuse_numel: float = 0.0
    # each sub-module's parameters fetched with the device drained (DeepSpeed v0.3.x
    # fetch_sub_module / _synchronize_communication): a gather not prefetched is exposed, a
    # prefetched one overlaps only the previous sub-module's compute, a gradient's
    # reduce-scatter only the next sub-module's backward (simtrain.engine.zero3sync). False:
    # torch FSDP's layer gathers prefetched a layer ahead on the DP stream.
    zero3_fetch_sync: bool = False
    # with zero3_fetch_sync: the next tensor is prefetched only while the gathered parameters
    # number fewer than this (DeepSpeed stage3_max_live_parameters)
    zero3_max_live_numel: float = 0.0
    # host tensor operations per (whole tensor, rank holding part of it) when the tensors under
    # zero3_persist_numel are gathered again after each optimizer step (DeepSpeed v0.3.x
    # _post_step -> _allgather_params; simtrain.workload.zero3.persistent_gather_seconds)
    zero3_persist_rank_ops: float = 0.0
    # all-gather and reduce-scatter run as rings whatever their size (engine.collective_algo
    # "auto"): the stack's NCCL has no other algorithm for them (NCCL 2.7-2.8, PyTorch 1.8's:
    # src/graph/tuning.cc, `if (coll != ncclFuncAllReduce && a != NCCL_ALGO_RING) continue;`)
    ring_gather_scatter: bool = False
    # Passes over the framework's contiguous gradient buffer, every step, over every gradient
    # the rank holds (not the optimizer's shard), at training.grad_precision bytes, on the
    # compute stream (simtrain.workload.kernels.GRAD_PASSES; simtrain.engine.plan.
    # grad_buffer_seconds): "zero" (the buffer zeroed before the first forward), "nan-check"
    # (each bucket's norm checked for NaN before its reduction), "scale" (each bucket scaled
    # by 1/DP before its reduction). Megatron-Core's DistributedDataParallel runs all three
    # with Megatron-LM's defaults. Empty: none (a framework that frees its gradients, or whose
    # passes are not modelled).
    grad_buffer_passes: tuple[str, ...] = ()
    # The trainer's bookkeeping after optimizer.step(), every step, on the step's critical
    # path (simtrain.engine.dpstream): `step_sync_collectives` tiny host-synchronous
    # collectives over the data-parallel group (a loss all-reduce and .item(), ...), and
    # `step_metric_states` scalar metric states each synchronised by torchmetrics'
    # gather_all_tensors: a barrier (a one-element all-reduce the host waits for), one
    # torch.zeros_like per rank of the group, an all_gather into that list of tensors, which
    # ProcessGroupNCCL copies out tensor by tensor: 2 x DP kernel launches (`launch_us` each)
    # per state, a cost that grows with the number of ranks. 0: not modelled.
    step_sync_collectives: int = 0
    step_metric_states: int = 0
    # Thread blocks (one per channel, each holding an SM) that an NCCL collective's kernel
    # keeps resident while it runs, so that compute kernels overlapping a data-parallel or
    # FSDP collective, or the TP collective Megatron runs beside the weight-gradient GEMMs
    # (engine.async_tp_backward), get the remaining SMs only (simtrain.engine.smload): NCCL_DEBUG=INFO
    # logs of 8-GPU NVSwitch nodes print "24 coll channels" (A100-SXM4-80GB, NCCL 2.20.5;
    # H100, p5.48xlarge, single node) and "16 coll channels" for communicators spanning nodes
    # (two p5.48xlarge; DGX-class nodes over InfiniBand: 2 channels per NIC), and an Nsight
    # trace of a GEMM beside FSDP's all-gather on an H100 shows the ncclAllGather kernel's 24
    # blocks pushing the GEMM's 132 tiles into a second wave (NVIDIA developer forum thread
    # 337991, "Compute-Communication Overlap Causes Severe GEMM Performance Degradation").
    # Cross-check: Lee et al. 2025 (arXiv:2507.03114) measure compute 18.9% slower on average
    # while it overlaps communication (A100, H100, MI250, MI210); 24 of an H100's 132 SMs is
    # 22%, 16 is 14%. 0: the collectives take no SMs (a stack whose collectives run on copy
    # or DMA engines).
    nccl_channels_intra_node: int = 24
    nccl_channels_inter_node: int = 16
    # SMs the expert dispatcher's kernels hold while an overlapped expert all-to-all runs
    # (the `interleaved-ep-overlap` and DualPipe pairs), taken from the compute beside it as
    # NCCL's blocks are (simtrain.engine.smload). DeepEP: 20, Megatron-Core's default
    # (megatron/core/transformer/transformer_config.py, moe_deepep_num_sms: int = 20,
    # "Number of SMs to use for DeepEP", from 8333bd5bb6, 2025-06, to 2d7060f44f, 2026-07;
    # the dispatcher calls set_deepep_num_sms with it). 0: not charged (NCCL's all-to-all:
    # its p2p channels per peer are not sized here).
    ep_overlap_sms: int = 0


STACK_CHOICES = {
    "norm": FUSION, "norm_saves": ("input", "output"), "rope": FUSION + ("complex",), "activation": FUSION, "bias_dropout_add": FUSION, "softmax": FUSION,
    "cross_entropy": FUSION, "optimizer": ("fused", "foreach"), "optimizer_moments": ("fp32", "bf16"),
    "optimizer_master": ("fp32", "bf16"),
    "dp_reduce_bf16": ("reduce-scatter", "all-reduce"), "param_gather": ("overlapped", "in-step"),
}
# the passes stack.grad_buffer_passes may name (simtrain.workload.kernels.GRAD_PASSES)
GRAD_BUFFER_PASSES = ("zero", "nan-check", "scale")
POSITIVE = ("sustained_fraction",)
# NeMo's TransformerLayerTPOverlapCfg fields (nemo/collections/llm/recipes/tp_overlap_configs/
# userbuffers.py): the order of Stack.tp_overlap_sms
TP_OVERLAP_GEMMS = ("qkv_dgrad", "qkv_wgrad", "fc1_dgrad", "fc1_wgrad", "qkv_fprop", "proj_dgrad", "fc1_fprop",
                    "fc2_dgrad", "proj_fprop", "fc2_fprop")
# Published H100 MFU spans 33-62%: a stack sustaining under 5% of its kernels' throughput is
# a typo (it would yield a step of centuries), refused.
MIN_SUSTAINED = 0.05
NON_NEGATIVE = ("launch_us", "collective_us", "fsdp_unit_us", "workspace_gib", "fragmentation", "loss_logit_bytes",
                "train_metric_ce_passes", "step_sync_collectives", "step_metric_states",
                "grad_accum_bytes", "zero3_gather_rank_ops", "zero3_reduce_rank_ops", "zero3_persist_numel", "zero3_reuse_numel",
                "zero3_max_live_numel", "zero3_persist_rank_ops", "nccl_channels_intra_node", "nccl_channels_inter_node", "ep_overlap_sms")


# Host and allowance costs no stack comes near (a kernel launch of 10 ms, a 10 TiB workspace):
# above them a value is a typo, refused rather than simulated as a step of centuries.
MAXIMA = {"launch_us": (1e4, 7), "collective_us": (1e5, 10), "fsdp_unit_us": (1e5, 100), "workspace_gib": (1e4, 2)}


def check_stack(stack: Stack, where: str) -> Stack:
    for key, choices in STACK_CHOICES.items():
        value = getattr(stack, key)
        if value not in choices:
            raise bad(f"{where}.{key}", value, "not a valid choice", f"use one of {', '.join(choices)}")
    if not 0 < stack.sustained_fraction <= 2:
        raise bad(f"{where}.sustained_fraction", stack.sustained_fraction, "must be in (0, 2]",
                  "use e.g. 0.8 (1.0 = kernels as benchmarked in isolation; above 1 only from a calibration)")
    if stack.sustained_fraction < MIN_SUSTAINED:  # 1e-300 made a step of 2e302 s
        raise bad(f"{where}.sustained_fraction", stack.sustained_fraction, f"is below {MIN_SUSTAINED}: no training stack "
                  "sustains under 5% of its kernels' benchmark throughput", "use e.g. 0.8")
    for key in NON_NEGATIVE:
        if getattr(stack, key) < 0:
            raise bad(f"{where}.{key}", getattr(stack, key), "must not be negative", f"use 0 or more")
    for key, (top, typical) in MAXIMA.items():
        if getattr(stack, key) > top:  # 1e300 made a step of 1e297 s: a typo, refused
            raise bad(f"{where}.{key}", getattr(stack, key), f"is above {top:g}, no stack's cost", f"use e.g. {typical}")
    if stack.tp_overlap_sms and (len(stack.tp_overlap_sms) != len(TP_OVERLAP_GEMMS) or min(stack.tp_overlap_sms) < 0):
        raise bad(f"{where}.tp_overlap_sms", list(stack.tp_overlap_sms), f"needs {len(TP_OVERLAP_GEMMS)} SM counts, "
                  "none negative", f"give one per GEMM in the order {', '.join(TP_OVERLAP_GEMMS)}, or [] for none")
    passes = stack.grad_buffer_passes
    wrong = [p for p in passes if p not in GRAD_BUFFER_PASSES]
    if wrong or len(set(passes)) != len(passes):
        raise bad(f"{where}.grad_buffer_passes", list(passes), f"{wrong[0]!r} is not a pass" if wrong else "names a pass twice",
                  f"use some of {', '.join(GRAD_BUFFER_PASSES)}, each once, or [] for none")
    if stack.vocab_pad_multiple < 1:
        raise bad(f"{where}.vocab_pad_multiple", stack.vocab_pad_multiple, "must be 1 or more",
                  "use 128 (Megatron's default) or 1 (no padding)")
    if stack.fragmentation >= 1:
        raise bad(f"{where}.fragmentation", stack.fragmentation, "must be below 1", "use e.g. 0.05 (5%)")
    return stack


def stack_names() -> list[str]:
    from simtrain.scenario.files import available
    return sorted(available("stacks"))


def load_stack_file(source: str, near: str | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]], Path]:
    """A stack file's own values and its [defaults] tables (`near`: the scenario file that
    names it, a stacks/ folder beside which is looked in first)."""
    path = resolve_path(source, "stacks", "stack", "cluster.stack", near)
    data = read_toml(path, "cluster.stack")
    if not data:  # an empty file would silently run the default stack under its name
        raise bad("cluster.stack", source, f"the stack file {str(path)!r} is empty",
                  "give it the stack's keys (copy a catalog stack such as stacks/megatron-core.toml), or name a catalog stack")
    defaults = data.pop("defaults", {})
    if not isinstance(defaults, dict) or any(not isinstance(v, dict) for v in defaults.values()):
        raise bad(f"{path.name} [defaults]", defaults, "expected tables of scenario keys",
                  "write [defaults.parallel] followed by key = value lines")
    data.setdefault("name", path.stem)
    return data, defaults, path


def build_stack(file_values: dict[str, Any], overrides: dict[str, Any], where: str) -> Stack:
    """The stack with the scenario's own [stack] values applied over the file's."""
    valid = [f.name for f in fields(Stack)]
    for key in file_values:
        if key not in valid:
            raise SimtrainError(f"unknown key {key} = {file_values[key]!r} in stack {where!r}: {_suggest(key, valid)}")
    stack = parse_dataclass(Stack, file_values, "stack")
    stack = parse_dataclass(Stack, overrides, "stack", stack)
    return check_stack(stack, "stack")
