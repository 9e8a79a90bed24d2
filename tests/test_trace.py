"""The Perfetto trace: slices nest on every track (the trace-event format's rule for
complete events on one thread, which Perfetto enforces by dropping or re-parenting the
offenders), every flow has both ends on a slice, counters and args carry the numbers.

`perfetto_import` emulates what Perfetto's JSON importer does with "X" events of one
thread: in (ts, -dur) order, a slice that starts inside the open one must end inside it.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from simtrain.analysis.run import simulate
from simtrain.analysis.trace import trace_events
from simtrain.cli import main
from simtrain.commands.run import device_names
from simtrain.scenario.config import load_scenario


def ns(us: float) -> int:
    return round(us * 1000)


def perfetto_import(events: list[dict]) -> tuple[int, dict]:
    """(slices that Perfetto would drop or mis-parent, slices by (pid, tid))."""
    by: dict[tuple[int, int], list[tuple[int, int, dict]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            by[(e["pid"], e["tid"])].append((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"]), e))
    bad = 0
    for xs in by.values():
        xs.sort(key=lambda x: (x[0], -x[1]))
        stack: list[tuple[int, int]] = []
        for a, b, _ in xs:
            while stack and stack[-1][1] <= a:
                stack.pop()
            if stack and b > stack[-1][1]:
                bad += 1
            stack.append((a, b))
    return bad, by


def run(overrides, link_series=True):
    res = simulate(load_scenario(None, overrides), link_series=link_series)
    plan = res.extra["plan"]
    return res, plan, trace_events(plan, res.records, device_names(plan), res.extra.get("_link_series"))


CASES = {
    "llama3-8b-1f1b-zero1": [],
    "interleaved-fsdp-sync-p2p": ['schedule.name="interleaved"', "parallel.vp=2", "parallel.zero=3",
                                  "engine.async_p2p=false", "parallel.sequence_parallel=true"],
    "zb-h1-zero0-full-recompute": ['schedule.name="zb-h1"', "parallel.zero=0", 'parallel.recompute="full"'],
    "per-rank": ['engine.mode="per-rank"'],
}


@pytest.mark.parametrize("extra", CASES.values(), ids=CASES.keys())
def test_every_track_nests_and_every_flow_has_both_ends(small_overrides, extra):
    res, plan, events = run(small_overrides + extra)
    bad, tracks = perfetto_import(events)
    assert bad == 0
    flows = defaultdict(dict)
    for e in events:
        if e["ph"] in ("s", "f"):
            assert e["ph"] not in flows[e["id"]]
            flows[e["id"]][e["ph"]] = e
    sends = [r for r in res.records if r.stream == "comm" and r.kind == "pp"]
    assert len(flows) == len(sends) > 0
    for ends in flows.values():
        assert set(ends) == {"s", "f"}
        for e in ends.values():  # each end binds to a slice of its thread that encloses it
            t = ns(e["ts"])
            assert any(a <= t <= b for a, b, _ in tracks[(e["pid"], e["tid"])])
        assert ends["f"]["bp"] == "e" and ends["s"]["pid"] != ends["f"]["pid"]


def test_one_slice_per_action_with_its_model_flops(small_overrides):
    res, plan, events = run(small_overrides)
    L = plan.layout
    compute = [e for e in events if e["ph"] == "X" and e["cat"] in ("F", "B", "W")]
    per_dev = defaultdict(list)
    for e in compute:
        per_dev[e["pid"]].append(e["name"])
    for names in per_dev.values():
        assert len(names) == len(set(names))  # a forward split around its TP all-reduces was several slices
        assert sorted(n for n in names if n.startswith("F")) == sorted(f"F{i}" for i in range(L.microbatches))
    # symmetric mode: each device stands for DP x TP x CP identical ones; the step's model FLOPs
    # are 6N + attention per token (PaLM): model_flops_per_token x tokens
    total = sum(e["args"]["model_flops"] for e in compute) * L.dp * L.tp * L.cp
    assert total == pytest.approx(res.model_flops_per_token * plan.tokens_per_step, rel=1e-6)


def test_communication_args_carry_bytes_and_group(small_overrides):
    res, plan, events = run(small_overrides)
    s, L = plan.scenario, plan.layout
    # activation of one micro-batch per TP rank, bf16: mb x seq x hidden x 2 / tp
    p2p = s.parallel.micro_batch * s.training.seq_len * s.model.hidden_size * 2 / L.tp
    sends = [e for e in events if e["ph"] == "X" and e["cat"] == "pp" and e["name"].startswith(("send", "recv"))
             and "bytes" in e["args"]]
    assert sends and all(e["args"]["bytes"] == pytest.approx(p2p, rel=1e-12) for e in sends)
    assert all(len(e["args"]["group"]) == 2 for e in sends)
    tp = [e for e in events if e["ph"] == "X" and e["name"].endswith("(tp)")]
    assert tp and all(len(e["args"]["group"]) == L.tp and e["args"]["bytes"] > 0 for e in tp)
    # ZeRO-1: each device reduce-scatters its gradients once per step (fp32, 4 bytes per
    # parameter of its TP shard) and all-gathers its bf16 parameters (2 bytes)
    for d in plan.simulated:
        mine = [st for st in plan.stages if plan.schedule.placement[st.index] == L.coord(d).pp]
        params = sum(st.params for st in mine)
        dp = [e for e in events if e["ph"] == "X" and e["name"].endswith("(dp)") and e["pid"] == d]
        rs = sum(e["args"]["bytes"] for e in dp if e["name"].startswith("reduce-scatter"))
        ag = sum(e["args"]["bytes"] for e in dp if e["name"].startswith("all-gather"))
        assert rs == pytest.approx(4 * params, rel=1e-9) and ag == pytest.approx(2 * params, rel=1e-9)
        assert all(len(e["args"]["group"]) == L.dp for e in dp)


def test_counters_memory_peak_matches_the_memory_model_and_links_are_tracked(small_overrides):
    from simtrain.workload.memory import estimate

    res, plan, events = run(small_overrides)
    rep = estimate(plan)
    for d in plan.simulated:
        st = rep.per_stage[plan.layout.coord(d).pp]
        mem = [e["args"]["GiB"] for e in events if e["ph"] == "C" and e["pid"] == d and e["name"].startswith("memory")]
        # the schedule's worst moment: model states + workspace + the live activations at the peak
        expect = (st.parameters + st.gradients + st.optimizer + st.workspace + st.activations + st.end_activations) / 2**30
        assert max(mem) == pytest.approx(expect, rel=1e-9)
        assert mem[-1] == pytest.approx((st.parameters + st.gradients + st.optimizer + st.workspace) / 2**30, rel=1e-9)
    links = [e for e in events if e["ph"] == "C" and "utilisation" in e["name"]]
    assert links and all(0 <= e["args"]["%"] <= 100 + 1e-6 for e in links)
    assert max(e["args"]["%"] for e in links) > 0


def test_run_writes_the_trace_file(tmp_path, capsys, small_overrides):
    path = tmp_path / "t.json"
    assert main(["run", *sum((["--set", o] for o in small_overrides), []), "--trace", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert perfetto_import(doc["traceEvents"])[0] == 0
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"compute", "TP/CP collectives (exposed)", "PP send", "PP receive", "DP/FSDP"} <= names
