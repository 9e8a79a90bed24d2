"""PyTorch FSDP1 costs of llm-foundry's Composer runs (stacks/llm-foundry.toml), each against
a hand calculation: the FlatParameter gradient assembled by autograd's split backward."""

from __future__ import annotations

import dataclasses

import pytest

from simtrain.analysis.validation import case_scenario, load_reference
from simtrain.hardware.devices import get_device
from simtrain.workload.costs import layer_cost
from simtrain.workload.ops import layer_ops

CASE_7B = "mpt-7b-h100-512gpu-s2048-mb6-ls"  # FULL_SHARD (ZeRO-3), 512 H100s
CASE_1B = "mpt-1b-h100-512gpu-s2048-mb12-ls"  # SHARD_GRAD_OP (ZeRO-2)


def _case(name):
    case = next(c for c in load_reference() if c.name == name)
    return case_scenario(case)


def _cats(s, dev, stack=None, par=None):
    ops = layer_ops(s.model, par or s.parallel, dev, stack or s.stack, s.training.seq_len,
                    grad_precision=s.training.grad_precision)
    return [o for o in ops if o.name == "fsdp flat grad cat"]


def test_flat_gradient_cat_once_per_block_backward() -> None:
    s = _case(CASE_7B)
    dev = get_device("H100-SXM")
    assert s.stack.name == "llm-foundry" and s.stack.fsdp_flat_grad_copy
    (cat,) = _cats(s, dev)
    assert (cat.phase, cat.segment, cat.kernels, cat.kind) == ("bwd", 0, 1, "memory")
    # hand calculation, MPT-7B block (d = 4,096, MLP 4d): Wqkv 4,096 x 12,288 + out 4,096^2
    # + up and down 2 x 4,096 x 16,384 = 201,326,592 weight elements (biases, norms left out);
    # the cat reads and writes bf16, 2 + 2 B, x1.3 = 5.2 B per element
    w = 4096 * 12288 + 4096 * 4096 + 2 * 4096 * 16384
    assert w == 201_326_592
    assert cat.nbytes == pytest.approx(5.2 * w, rel=1e-12)
    # H100 streams 3.35 TB/s x 0.87 and pays 2 us per kernel:
    # 1,046,898,278 B / 2.9145e12 B/s = 359.20 us, + 2 us = 361.20 us per block and micro-batch
    assert cat.seconds == pytest.approx(361.20e-6, rel=1e-4)
    # the block's backward grows by exactly that; its forward does not
    off = dataclasses.replace(s.stack, fsdp_flat_grad_copy=False)
    on_c, off_c = (layer_cost(s.model, s.parallel, dev, s.training.seq_len, st, grad_precision="bf16")
                   for st in (s.stack, off))
    assert on_c.fwd == off_c.fwd and on_c.recompute == off_c.recompute
    assert sum(on_c.bwd_input) - sum(off_c.bwd_input) == pytest.approx(cat.seconds * on_c.launch_factor[1], rel=1e-9)


def test_flat_gradient_cat_under_shard_grad_op_and_not_without_sharding() -> None:
    s = _case(CASE_1B)
    dev = get_device("H100-SXM")
    assert s.parallel.zero == 2
    (cat,) = _cats(s, dev)
    # MPT-1B block, d = 2,048: 12 d^2 = 50,331,648 weight elements, 5.2 B each
    assert cat.nbytes == pytest.approx(5.2 * 12 * 2048 ** 2, rel=1e-12)
    # no FSDP sharding (ZeRO-0/1) or a single replica: no flat parameter to assemble
    for par in (dataclasses.replace(s.parallel, zero=1), dataclasses.replace(s.parallel, zero=0)):
        assert not _cats(s, dev, par=par)
    # other stacks do not have it (FSDP2's torchtitan has its own copy-in instead)
    from simtrain.scenario.stack import Stack
    assert not Stack().fsdp_flat_grad_copy


# ---- Composer's per-step syncs (stack.step_sync_collectives, step_metric_states) ----------

CASE_SMALL = "mpt-125m-a100-40g-128gpu-s2048-mb26"  # 128 A100s, one micro-batch per step


def _run_case(name, **stack):
    from simtrain.engine.actions import Engine
    from simtrain.engine.plan import make_plan

    s = _case(name)
    s = dataclasses.replace(s, stack=dataclasses.replace(s.stack, **stack))
    plan = make_plan(s)
    recs = Engine(plan).run()
    return plan, recs, max(r.end for r in recs)


def test_composer_step_syncs_cost_two_launches_per_rank_per_metric_state() -> None:
    plan, recs, step = _run_case(CASE_SMALL)
    s = plan.scenario
    assert (s.stack.step_sync_collectives, s.stack.step_metric_states) == (3, 4)
    n = plan.layout.dp
    assert n == 128
    rank = plan.simulated[0]
    mine = [r for r in recs if r.device == rank and r.stream == "main"]
    # hand calculation: each of the 4 metric states (LanguageCrossEntropy and
    # LanguagePerplexity, sum_loss and total_items) launches 128 zeros_like and 128 copies at
    # 7 us: 2 x 128 x 7 us = 1.792 ms per state, 7.168 ms per step
    host = [r for r in mine if r.label in ("metric sync zeros_like", "metric sync copies")]
    assert len(host) == 8
    assert all(r.end - r.start == pytest.approx(128 * 7e-6, rel=1e-9) for r in host)
    assert sum(r.end - r.start for r in host) == pytest.approx(7.168e-3, rel=1e-9)
    # all after the optimizer step, in the step's critical path
    opt_end = max(r.end for r in mine if r.label == "optimizer")
    assert min(r.start for r in host) >= opt_end
    # 3 + 4 barriers all-reduced and 4 all-gathers on the DP stream, each waited for
    comm = [r for r in recs if r.device == rank and r.stream == "comm"]
    assert sum(r.label == "step sync(dp)" for r in comm) == 3
    assert sum(r.label == "metric barrier(dp)" for r in comm) == 4
    gathers = [r for r in comm if r.label == "metric all-gather(dp)"]
    assert len(gathers) == 4 and all(r.nbytes == 128 * 4 for r in gathers)
    # the step grows by the host launches plus the tiny collectives' latency (each under
    # 1 ms on 16 nodes), nothing else
    _, _, base = _run_case(CASE_SMALL, step_sync_collectives=0, step_metric_states=0)
    waits = sum(r.end - r.start for r in mine if r.label == "step sync")
    assert step - base == pytest.approx(7.168e-3 + waits, rel=1e-6)
    assert 0 < waits < 11 * 1e-3


def test_composer_step_syncs_grow_with_the_ranks() -> None:
    """Same work per GPU on 16 and 128 ranks: the launches scale 8x (0.896 ms -> 7.168 ms)."""
    _, _, t16 = _run_case("mpt-125m-a100-40g-16gpu-s2048-mb26")
    _, _, b16 = _run_case("mpt-125m-a100-40g-16gpu-s2048-mb26", step_sync_collectives=0, step_metric_states=0)
    _, _, t128 = _run_case(CASE_SMALL)
    _, _, b128 = _run_case(CASE_SMALL, step_sync_collectives=0, step_metric_states=0)
    assert t16 - b16 >= 8 * 16 * 7e-6 and t128 - b128 >= 8 * 128 * 7e-6
    assert (t128 - b128) - (t16 - b16) == pytest.approx(8 * (128 - 16) * 7e-6, rel=0.25)
