"""torchtitan's extra kernels (stacks/torchtitan.toml), each against a hand calculation:
the complex-form rotary, GQA's repeat_kv copy, DTensor's sequence-dim cat copies around TP
collectives, FSDP2's all-gather copy-out and reduce-scatter copy-in, and the sums of the
separate projections' input gradients."""

from __future__ import annotations

import pytest

from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario
from simtrain.workload.kernels import mem_op
from simtrain.workload.ops import layer_ops, layer_weight_elements

# Llama 3 8B on 16 H100s, TP2 PP4 DP2, 2,048 tokens of micro-batch 1 (conftest small_overrides)
T, H, HD, HEADS, KV, F, TP = 2048, 4096, 128, 32, 8, 14336, 2


def _ops(small_overrides, *extra):
    s = load_scenario(None, small_overrides + list(extra))
    plan = make_plan(s)
    return s, plan, layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len,
                              grad_precision=s.training.grad_precision)


def _op(ops, name, phase):
    return [o for o in ops if o.name == name and o.phase == phase]


def test_complex_rotary_is_three_kernels_per_tensor_of_20_bytes(small_overrides):
    # x.float() 2+4 B, complex multiply 4+4 B, .type_as(x) 4+2 B per element = 20 B, x1.3
    m = mem_op("rope_complex", True)
    assert m.fwd_bytes == m.bwd_bytes == pytest.approx(20 * 1.3)
    assert (m.fwd_kernels, m.bwd_kernels) == (6, 6)  # Q and K
    assert mem_op("rope_complex", False) == m  # Inductor falls back on complex ops: compiled = eager
    s, plan, ops = _ops(small_overrides, 'stack.rope="complex"')
    rot = _op(ops, "rotary", "fwd")[0]
    assert rot.nbytes == pytest.approx(20 * 1.3 * T * ((HEADS + KV) // TP) * HD)
    # about half HF's rotate_half form (55 B), five times a fused kernel (5.2 B)
    assert mem_op("rope", False).fwd_bytes / m.fwd_bytes == pytest.approx(2.1, abs=0.1)


def test_repeat_kv_copies_k_and_v_to_every_query_head(small_overrides):
    _, _, off = _ops(small_overrides)
    assert not _op(off, "repeat kv", "fwd")
    _, _, ops = _ops(small_overrides, "stack.gqa_repeat_kv=true")
    (fwd,), (bwd,) = _op(ops, "repeat kv", "fwd"), _op(ops, "repeat kv", "bwd")
    # expanded elements: tokens x local query heads x head dim; 2 B + 2 B / n_rep (4) ~ 2.5 B, x1.3
    assert fwd.nbytes == bwd.nbytes == pytest.approx(3.3 * T * (HEADS // TP) * HD)
    assert fwd.kernels == 2


def test_dtensor_sequence_dim_collectives_copy_the_activation_once_each(small_overrides):
    seq = ['parallel.sequence_parallel=true', 'stack.tp_shard_dim_copies=true']
    _, _, ops = _ops(small_overrides, *seq)
    copies = [o for o in ops if o.name == "tp cat copy"]
    # per block and pass one all-gather and one reduce-scatter, each a copy of the full
    # (gathered) tokens x hidden activation: read 2 + write 2 B, x1.3
    assert len(copies) == 4
    assert sum(o.nbytes for o in copies) == pytest.approx(4 * 2 * T * H * 5.2)
    _, _, plain = _ops(small_overrides, 'parallel.sequence_parallel=true')
    assert not [o for o in plain if o.name == "tp cat copy"]


def test_fsdp2_copy_out_once_per_all_gather(small_overrides):
    over = small_overrides + ["parallel.zero=3", "stack.fsdp_copy_out=true"]
    _, _, ops = _ops(over)
    w = layer_weight_elements(load_scenario(None, small_overrides).model, TP)
    # Llama 3 8B layer on TP2: (q + 2 kv) h + q h + 3 h f, halved
    assert w == (H * (HEADS + 2 * KV) * HD + HEADS * HD * H + 3 * H * F) / TP
    (f,), (b,) = _op(ops, "fsdp copy-out", "fwd"), _op(ops, "fsdp copy-out", "bwd")
    assert f.nbytes == b.nbytes == pytest.approx(5.2 * w)
    assert (f.segment, b.segment) == (0, 1)  # before the layer's forward and its backward
    # full recomputation reruns the forward after the backward's all-gather, not its copy-out
    s = load_scenario(None, over + ['parallel.recompute="full"'])
    lc = make_plan(s).stages[0].layer
    assert lc.recompute == pytest.approx(sum(lc.fwd) - f.seconds, rel=1e-9)


def test_async_tp_sums_the_received_chunks(small_overrides):
    _, _, ops = _ops(small_overrides, 'parallel.sequence_parallel=true', 'stack.async_tp_reduce=true',
                     "engine.overlap_tp_comm=true")  # (only with async TP: simtrain.scenario.config)
    sums = [o for o in ops if o.name == "tp chunk sum"]
    # two matmul-reduce-scatters per pass (out proj, mlp down; backward: qkv and mlp up input
    # gradients), each summing the full tokens x hidden partial output: read 2 B + write 2/TP B
    # (TP 8: 2.25 B), x1.3 = 2.9 B per element
    assert len(sums) == 4 and {o.phase for o in sums} == {"fwd", "bwd"}
    assert sum(o.nbytes for o in sums) == pytest.approx(4 * 2.9 * T * H)
    assert 2.9 == pytest.approx((2 + 2 / 8) * 1.3, abs=0.03)  # 2.925


@pytest.mark.parametrize("overlap", [False, True])
def test_pytorch_tp_kernels_follow_whether_tp_communication_is_overlapped(small_overrides, overlap):
    """The torchtitan stack carries both: without async TP, DTensor's cat copy around each
    sequence-dim collective; with it (engine.overlap_tp_comm), micro-pipeline TP's sum
    kernel instead (its fused ops take the layout). Nothing else is set by hand."""
    s, _, ops = _ops(small_overrides, 'cluster.stack="torchtitan"', "parallel.sequence_parallel=true",
                     f"engine.overlap_tp_comm={'true' if overlap else 'false'}")
    assert s.stack.async_tp_reduce is overlap and s.stack.tp_shard_dim_copies is (not overlap)
    names = {o.name for o in ops}
    assert ("tp chunk sum" in names) is overlap and ("tp cat copy" in names) is (not overlap), sorted(names)


def test_async_tp_runs_the_gemms_beside_tp_collectives_one_shard_at_a_time(small_overrides):
    """PyTorch's async TP consumes (all-gather-matmul) or produces (matmul-reduce-scatter) one
    TP rank's shard at a time: QKV, out proj, MLP up and MLP down run as TP GEMMs of T/TP
    rows in the forward and input gradient, each priced by the same tile model; the weight
    gradients stay whole. Each all-gather-matmul first copies the local shard (T/TP x H) into
    its symmetric buffer. Llama 3 8B, TP2, 2,048 tokens."""
    from simtrain.workload.compute import gemm_time
    base = [*small_overrides, 'parallel.sequence_parallel=true', "engine.overlap_tp_comm=true"]
    _, plan, ops = _ops(base, 'stack.async_tp_split_gemms=true')
    _, _, whole = _ops(base)
    dev = plan.device
    ffn = F // TP
    shapes = {"qkv": ((HEADS + 2 * KV) // TP * HD, H), "out proj": (H, HEADS // TP * HD),
              "mlp up": (2 * ffn, H), "mlp down": (H, ffn)}
    m = T // TP
    for name, (n, k) in shapes.items():
        fwd, bwd, wgrad = (_op(ops, name, ph)[0] for ph in ("fwd", "bwd", "wgrad"))
        assert fwd.seconds == pytest.approx(TP * gemm_time(dev, m, n, k), rel=1e-12)
        assert bwd.seconds == pytest.approx(TP * gemm_time(dev, m, k, n), rel=1e-12)
        assert (fwd.kernels, bwd.kernels) == (TP, TP)
        assert wgrad.seconds == _op(whole, name, "wgrad")[0].seconds
        # smaller tiles are never faster in total
        assert fwd.seconds >= _op(whole, name, "fwd")[0].seconds
    copies = [o for o in ops if o.name == "async tp shard copy"]
    assert len(copies) == 4  # two all-gather-matmuls per pass, forward and backward
    assert sum(o.nbytes for o in copies) == pytest.approx(4 * 5.2 * (T // TP) * H)
    # without overlapped TP communication the stack's flag is dropped (no async TP)
    s, _, plain = _ops(small_overrides, 'cluster.stack="torchtitan"', "parallel.sequence_parallel=true",
                       "engine.overlap_tp_comm=false")
    assert s.stack.async_tp_split_gemms is False
    assert not any(o.name == "async tp shard copy" for o in plain)


@pytest.mark.parametrize("grad_precision, per_element", [("fp32", (2 + 4) * 1.3), ("bf16", (2 + 2) * 1.3)])
def test_fsdp2_gradient_copy_in_once_per_layer_backward(small_overrides, grad_precision, per_element):
    """FSDP2's post-backward copies the layer's bf16 gradients into the reduce-scatter buffer
    in the reduction dtype (fp32: read 2 B, write 4 B; bf16: a plain copy), x1.3, once per
    layer and micro-batch, in the backward only: recomputation never reruns it."""
    over = small_overrides + ["parallel.zero=3", "stack.fsdp_grad_copy_in=true", f'training.grad_precision="{grad_precision}"']
    s, _, ops = _ops(over)
    assert not [o for o in _ops(small_overrides + ["parallel.zero=3"])[2] if o.name == "fsdp grad copy-in"]
    w = layer_weight_elements(s.model, TP)
    copies = [o for o in ops if o.name == "fsdp grad copy-in"]
    assert [(o.phase, o.segment, o.kernels) for o in copies] == [("bwd", 0, 1)]  # after the layer's backward
    assert copies[0].nbytes == pytest.approx(per_element * w, rel=0.01)  # 7.8 / 5.2 B per weight element
    # the same layer's backward grows by exactly that kernel's time; the forward and a full
    # recomputation do not
    base = make_plan(load_scenario(None, small_overrides + ["parallel.zero=3", 'parallel.recompute="full"'])).stages[0].layer
    lc = make_plan(load_scenario(None, over + ['parallel.recompute="full"'])).stages[0].layer
    assert lc.fwd == pytest.approx(base.fwd, rel=1e-12) and lc.recompute == pytest.approx(base.recompute, rel=1e-12)
    assert sum(lc.bwd_input) - sum(base.bwd_input) == pytest.approx(copies[0].seconds * lc.launch_factor[1], rel=1e-9)
    # without ZeRO-3 sharding there is no reduce-scatter buffer to copy into
    assert not [o for o in _ops(small_overrides + ["stack.fsdp_grad_copy_in=true"])[2] if o.name == "fsdp grad copy-in"]


@pytest.mark.parametrize("mlp, adds", [("gated", 3), ("plain", 2)])
def test_separate_projections_sum_their_input_gradients(small_overrides, mlp, adds):
    """Separate wq, wk, wv (and w1, w3) linears on one input: autograd adds the three (two)
    input gradients pairwise, two adds for Q/K/V and one for a gated MLP's gate/up, each x + y
    over the tokens x hidden input (the measured residual add, 7.6 B per element)."""
    _, _, ops = _ops(small_overrides, "stack.separate_projection_grads=true", f'model.mlp="{mlp}"')
    sums = [o for o in ops if o.name == "projection grad sum"]
    assert len(sums) == adds and {o.phase for o in sums} == {"bwd"}
    assert [o.segment for o in sums] == [0, 0, 1][:adds]
    # TP2 without sequence parallelism: every rank's linears read all 2,048 tokens x 4,096
    assert sum(o.nbytes for o in sums) == pytest.approx(adds * 7.6 * T * H)
    assert mem_op("residual", True).bwd_bytes == 7.6
    _, _, off = _ops(small_overrides, f'model.mlp="{mlp}"')
    assert not [o for o in off if o.name == "projection grad sum"]


@pytest.mark.parametrize("key", ["fsdp_grad_copy_in", "separate_projection_grads"])
def test_new_stack_switches_refuse_a_non_boolean(small_overrides, key):
    from simtrain.scenario.errors import SimtrainError
    with pytest.raises(SimtrainError) as e:
        load_scenario(None, small_overrides + [f"stack.{key}=3"])
    assert f"stack.{key} = 3" in str(e.value) and "true or false" in str(e.value)


def test_async_tp_waits_for_copies_its_gemms_cannot_hide(small_overrides):
    """PyTorch's async TP pipelines each shard's copy with the GEMM on the previous shard:
    G/TP + (TP-1) max(C/(TP-1), G/TP) = G + max(0, C - G (TP-1)/TP) for a GEMM of G seconds
    whose copies add up to the all-gather's C. C is the idle-network ring all-gather of the
    micro-batch's activation (T x H bf16) over the node's NVSwitch: CALL + (n-1)/n S/B +
    (n-1) alpha (dgx-h100: 360 GB/s, 2 us per GPU -> switch -> GPU step)."""
    from simtrain.scenario.stack import Stack

    over = [*small_overrides, 'parallel.sequence_parallel=true', "engine.overlap_tp_comm=true",
            'engine.collective_algo="ring"']
    s, plan, _ = _ops(over, 'stack.async_tp_split_gemms=true')
    S = T * H * 2
    c = Stack().collective_us * 1e-6 + (TP - 1) / TP * S / (3600 / 8 * 1e9 * 0.80) + (TP - 1) * 2e-6
    assert plan.tp_gather_s == pytest.approx(c, rel=1e-9)
    # without overlapped TP communication the collectives run in the engine: nothing to price here
    assert make_plan(load_scenario(None, [*over[:-2], "engine.overlap_tp_comm=false"])).tp_gather_s == 0.0
    for gather in (c, 1e-9, 1.0):
        ops = layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len,
                        grad_precision=s.training.grad_precision, tp_gather_s=gather)
        for name in ("qkv", "out proj", "mlp up", "mlp down"):
            for phase in ("fwd", "bwd"):
                g = _op(ops, name, phase)[0].seconds
                want = max(0.0, gather - g * (TP - 1) / TP)
                waits = _op(ops, f"tp overlap wait: {name}", phase)
                assert sum(w.seconds for w in waits) == pytest.approx(want, rel=1e-12, abs=0.0), (gather, name, phase)
                assert all(w.kernels == 0 and w.kind == "comm" for w in waits)
        if gather == 1.0:  # a second-long copy: every GEMM waits, 8 per layer
            assert len([o for o in ops if o.kind == "comm"]) == 8
        if gather == 1e-9:
            assert not [o for o in ops if o.kind == "comm"]
    # the layer's forward is longer than without the waits by exactly their sum (no launch
    # scaling). TP8: GQA's QKV (768 columns a rank) and out proj (512 rows) cannot hide theirs
    s, plan, _ = _ops(over + ["parallel.tp=8", "parallel.pp=2", "parallel.dp=1"], 'stack.async_tp_split_gemms=true')
    lc = plan.stages[0].layer
    ops = layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len,
                    grad_precision=s.training.grad_precision, tp_gather_s=plan.tp_gather_s)
    from simtrain.workload.costs import layer_cost
    bare = layer_cost(s.model, s.parallel, plan.device, s.training.seq_len, s.stack,
                      grad_precision=s.training.grad_precision)
    waits = sum(o.seconds for o in ops if o.kind == "comm" and o.phase == "fwd")
    assert {o.name for o in ops if o.kind == "comm"} == {"tp overlap wait: qkv", "tp overlap wait: out proj"}
    assert sum(lc.fwd) - sum(bare.fwd) == pytest.approx(waits, rel=1e-9)


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_userbuffers_tp_overlap_waits_follow_its_pipelined_and_bulk_overlaps(small_overrides, precision):
    """Transformer Engine's userbuffers: qkv/fc1_fprop's all-gather, proj/fc2_fprop's reduce-
    scatter and proj/fc2_dgrad's all-gather of the output gradient are pipelined with their
    GEMM (G + max(0, C - G (TP-1)/TP)); qkv/fc1_dgrad's re-gather of the input and
    qkv/fc1_wgrad's reduce-scatter run in bulk beside the input- and weight-gradient GEMMs
    (G + max(0, C - G)). Under FP8 the gathered GEMM inputs are cast first: C / 2. The GEMMs
    are the ones the userbuffers' SMs slow (stack.tp_overlap_sms)."""
    over = [*small_overrides, 'cluster.stack="megatron-core"', 'parallel.sequence_parallel=true',
            "engine.overlap_tp_comm=true", f'training.precision="{precision}"']
    s, plan, _ = _ops(over)
    assert plan.tp_gather_s > 0 and s.stack.tp_overlap_sms and not s.stack.async_tp_split_gemms
    from simtrain.workload import fp8 as FP8
    prec = FP8.workload_precision(s.training.precision, s.training.fp8_recipe)
    half = 0.5 if precision == "fp8" else 1.0
    for c in (1e-9, 3e-4, 1.0):
        ops = layer_ops(s.model, s.parallel, plan.device, s.stack, s.training.seq_len, precision=prec,
                        grad_precision=s.training.grad_precision, tp_gather_s=c)
        g = {(o.name, o.phase): o.seconds for o in ops if o.kind == "gemm"}
        p = (TP - 1) / TP
        want = {("qkv", "fwd"): max(0, c * half - g["qkv", "fwd"] * p),
                ("mlp up", "fwd"): max(0, c * half - g["mlp up", "fwd"] * p),
                ("out proj", "fwd"): max(0, c - g["out proj", "fwd"] * p),
                ("mlp down", "fwd"): max(0, c - g["mlp down", "fwd"] * p),
                ("out proj", "bwd"): max(0, c * half - g["out proj", "bwd"] * p),
                ("mlp down", "bwd"): max(0, c * half - g["mlp down", "bwd"] * p),
                ("qkv", "bwd"): max(0, c * half - g["qkv", "bwd"]) + max(0, c - g["qkv", "wgrad"]),
                ("mlp up", "bwd"): max(0, c * half - g["mlp up", "bwd"]) + max(0, c - g["mlp up", "wgrad"])}
        for (name, phase), w in want.items():
            got = sum(o.seconds for o in _op(ops, f"tp overlap wait: {name}", phase))
            assert got == pytest.approx(w, rel=1e-12, abs=0.0), (c, name, phase)
        if c == 1.0:
            assert len([o for o in ops if o.kind == "comm"]) == 10  # 4 pipelined forward, 2 + 4 backward


def test_separate_projections_are_separate_gemms_by_hand() -> None:
    """torchtitan's wq, wk, wv and w1, w3 are separate linears: three GEMMs (two for gate and
    up) in the forward, the input gradient and the weight gradient, each through the tile
    model at its own width (Llama 3 8B at TP8: 512, 128 and 128 columns), the FLOPs those
    of the fused GEMM."""
    from simtrain.engine.plan import make_plan
    from simtrain.scenario.config import load_scenario
    from simtrain.workload.compute import gemm_time
    from simtrain.workload.ops import layer_ops

    ov = ['model.name="llama3-8b"', "model.num_hidden_layers=2", "cluster.gpus=8", "parallel.tp=8", "parallel.pp=1",
          "parallel.dp=1", "parallel.vp=1", "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1",
          'schedule.name="1f1b"', "parallel.sequence_parallel=true", "training.seq_len=4096", "training.global_batch=2",
          'cluster.stack="torchtitan"', "engine.overlap_tp_comm=false"]
    out = {}
    for sep in (True, False):
        s = load_scenario(None, ov + [f"stack.separate_projections={str(sep).lower()}"])
        dev = make_plan(s).device
        out[sep] = {(o.name, o.phase): o for o in layer_ops(s.model, s.parallel, dev, s.stack, s.training.seq_len)
                    if o.kind == "gemm" and o.name in ("qkv", "mlp up")}
    t, h = 4096, 4096
    widths = {"qkv": (512, 128, 128), "mlp up": (1792, 1792)}
    for (name, phase), o in out[True].items():
        ns = widths[name]
        hand = {"fwd": sum(gemm_time(dev, t, n, h) for n in ns), "bwd": sum(gemm_time(dev, t, h, n) for n in ns),
                "wgrad": sum(gemm_time(dev, h, n, t) for n in ns)}[phase]
        assert o.seconds == pytest.approx(hand, rel=1e-12) and o.kernels == len(ns)
        fused = out[False][(name, phase)]
        assert fused.kernels == 1 and o.flops == fused.flops
        assert o.seconds >= fused.seconds * (1 - 1e-9)  # narrower GEMMs are never faster in the tile model
