"""Chrome / Perfetto trace (Trace Event Format, JSON) of one simulated step.

One process per simulated device, with one track (thread) per stream that can overlap,
each properly nested as the format requires of complete ("X") slices on one thread:

    compute           one slice per action (F3, B3, W3, R3, optimizer) from its first to its
                      last compute piece, and the device's waits between actions (bubble,
                      receive, DP, TP peers); waits inside an action (FSDP parameters) nest
                      in it
    TP/CP exposed     the TP and CP collectives the compute stream waited for
    PP send [n]       point-to-point sends in flight (lanes: concurrent sends never overlap
    PP receive [n]    on one track), and the same transfers on the receiving device
    DP/FSDP [n]       gradient reductions and parameter gathers on the DP stream

A flow arrow links every send to its receive. Counter tracks show each device's memory in
use (model states and workspace + the activations of the micro-batches in flight, as
`simtrain.workload.memory` sizes them) and, in a "network" process, the utilisation of the
busiest links over time. `args` carry model FLOPs (compute), bytes and the process group
(communication). Times are whole nanoseconds written in microseconds, so touching slices
never overlap by a rounding error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simtrain.engine.timeline import Record
from simtrain.scenario.units import GIB

COMPUTE = ("F", "B", "W", "R", "opt")
TID_COMPUTE, TID_TP = 1, 2
LANE_BASE = {"send": 100, "recv": 200, "dp": 300}
LANE_NAME = {"send": "PP send", "recv": "PP receive", "dp": "DP/FSDP"}


def _ns(t: float) -> int:
    return round(t * 1e9)


def _slice(name: str, cat: str, start: float, end: float, pid: int, tid: int, args: dict) -> dict[str, Any]:
    a, b = _ns(start), _ns(end)
    return {"name": name, "cat": cat, "ph": "X", "ts": a / 1000, "dur": (b - a) / 1000, "pid": pid, "tid": tid, "args": args}


def _lanes(intervals: list[tuple[float, float]]) -> list[int]:
    """Lane of each interval so that no two in a lane overlap (greedy interval partitioning,
    in start order; as many lanes as the most intervals ever in flight)."""
    order = sorted(range(len(intervals)), key=lambda i: (_ns(intervals[i][0]), _ns(intervals[i][1])))
    free_at: list[int] = []  # end (ns) of each lane's last interval
    lane = [0] * len(intervals)
    for i in order:
        a, b = _ns(intervals[i][0]), _ns(intervals[i][1])
        for j, end in enumerate(free_at):
            if end <= a:
                lane[i], free_at[j] = j, b
                break
        else:
            lane[i] = len(free_at)
            free_at.append(b)
    return lane


def _action_flops(plan, r: Record, split: bool) -> float:
    """Model FLOPs of one action (F: a third of fwd+bwd, B: two thirds or one third when
    the weight gradient is a separate W) or the recomputation's FLOPs (R)."""
    if not 0 <= r.stage < len(plan.stages):
        return 0.0
    st = plan.stages[r.stage]
    if r.kind == "R":
        return st.recompute_flops
    share = {"F": 1 / 3, "B": (1 / 3 if split else 2 / 3), "W": 1 / 3}.get(r.kind, 0.0)
    return share * st.model_flops


def _main_events(plan, dev: int, recs: list[Record]) -> tuple[list[dict], list[tuple[float, float, int, str]]]:
    """Compute-track slices (actions merged from their pieces, waits) and TP/CP slices of one
    device; also (start, end, stage, kind) of each action, for the memory counter."""
    L = plan.layout
    split = plan.schedule.split_backward  # a property that scans every action: once
    groups = {dim: list(L.group(dim, dev)) for dim in ("tp", "cp")}
    events: list[dict] = []
    actions: list[tuple[float, float, int, str]] = []
    cur: list | None = None  # [start, end, record, compute seconds]

    def close() -> None:
        if cur is not None:
            r = cur[2]
            args = {"stage": r.stage, "microbatch": r.microbatch, "compute_s": cur[3]}
            if r.kind != "opt":
                args["model_flops"] = _action_flops(plan, r, split)
            events.append(_slice(r.label, r.kind, cur[0], cur[1], dev, TID_COMPUTE, args))
            actions.append((cur[0], cur[1], r.stage, r.kind))

    for r in recs:
        if r.kind in COMPUTE:
            if cur is not None and cur[2].kind == r.kind and cur[2].label == r.label:
                cur[1], cur[3] = r.end, cur[3] + r.duration
                continue
            close()
            cur = [r.start, r.end, r, r.duration]
        elif r.kind in ("tp", "cp") and not r.label.startswith("wait"):
            dim = r.kind
            st = plan.stages[r.stage] if 0 <= r.stage < len(plan.stages) else None
            nbytes = (st.layer.tp_bytes if dim == "tp" else st.layer.cp_bytes) if st else 0.0
            events.append(_slice(r.label, dim, r.start, r.end, dev, TID_TP,
                                 {"stage": r.stage, "microbatch": r.microbatch, "bytes": nbytes,
                                  "group": groups[dim]}))
        else:  # waits: bubble, receive, DP, TP peers; one between two pieces of an action nests in it
            events.append(_slice(r.label, r.kind, r.start, r.end, dev, TID_COMPUTE,
                                 {"stage": r.stage, "microbatch": r.microbatch, "blamed_on": r.kind}))
    close()
    return events, actions


def _memory_counter(plan, dev: int, actions: list[tuple[float, float, int, str]], rep, live: dict[int, float],
                    release: str) -> list[dict]:
    """Memory in use on `dev`: model states + workspace, plus each (chunk, micro-batch)'s
    activations from the start of its F to the end of its B (W when the backward is split);
    `rep` is `simtrain.workload.memory.estimate(plan)`, `live` `stage_activation_bytes`."""
    st = rep.per_stage[plan.layout.coord(dev).pp]
    base = st.parameters + st.gradients + st.optimizer + st.workspace
    steps: list[tuple[int, float]] = [(0, 0.0)]
    for start, end, stage, kind in actions:
        if kind == "F":
            steps.append((_ns(start), live.get(stage, 0.0)))
        elif kind == release:
            steps.append((_ns(end), -live.get(stage, 0.0)))
    steps.sort(key=lambda x: x[0])
    out, level = [], base
    for t, delta in steps:
        level += delta
        if out and out[-1]["ts"] == t / 1000:
            out[-1]["args"]["GiB"] = level / GIB
        else:
            out.append({"name": "memory in use (GiB)", "ph": "C", "ts": t / 1000, "pid": dev, "args": {"GiB": level / GIB}})
    return out


def stage_activation_bytes(plan) -> dict[int, float]:
    """Activation bytes one micro-batch leaves on each virtual stage until its backward:
    the stage's layers (Korthikanti et al. 2022, as `simtrain.workload.memory`) and the
    embedding / output layer on the end stages."""
    from simtrain.workload.memory import (embedding_activation_bytes, head_activation_bytes, kernel_activation_kwargs,
                                          layer_activation_bytes)

    s, L = plan.scenario, plan.layout
    par, seq = s.parallel, s.training.seq_len
    flash = bool(getattr(par, "flash_attention", True))
    per_layer = layer_activation_bytes(s.model, seq, L.micro_batch, L.tp, par.sequence_parallel, par.recompute, flash, L.cp,
                                       **kernel_activation_kwargs(s.stack, par))
    emb = embedding_activation_bytes(s.model, seq, L.micro_batch, L.tp, par.sequence_parallel, L.cp)
    head = head_activation_bytes(s.model, seq, L.micro_batch, L.tp, par.sequence_parallel, L.cp,
                                 s.stack.loss_logit_bytes)
    last = len(plan.stages) - 1
    return {st.index: st.layers * per_layer + (emb if st.index == 0 else 0.0) + (head if st.index == last else 0.0)
            for st in plan.stages}


def trace_events(plan, records: list[Record], device_names: dict[int, str] | None = None,
                 link_series: dict[str, list[tuple[float, float]]] | None = None) -> list[dict[str, Any]]:
    names = device_names or {}
    main: dict[int, list[Record]] = {}
    comm: dict[str, list[Record]] = {"send": [], "dp": []}
    for r in records:
        if r.stream == "main":
            main.setdefault(r.device, []).append(r)
        else:
            comm["send" if r.kind == "pp" else "dp"].append(r)
    devices = sorted(set(main) | {r.device for rs in comm.values() for r in rs})
    events: list[dict[str, Any]] = []
    threads: dict[tuple[int, int], str] = {}
    from simtrain.workload.memory import estimate

    mem, live = estimate(plan), stage_activation_bytes(plan)
    release = "W" if plan.schedule.split_backward else "B"
    for d in devices:
        events.append({"name": "process_name", "ph": "M", "pid": d, "tid": 0, "args": {"name": names.get(d, f"rank {d}")}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": d, "tid": 0, "args": {"sort_index": d}})
        recs = sorted(main.get(d, []), key=lambda r: (r.start, r.end))
        evs, actions = _main_events(plan, d, recs)
        events += evs
        threads[(d, TID_COMPUTE)] = "compute"
        if any(e["tid"] == TID_TP for e in evs):
            threads[(d, TID_TP)] = "TP/CP collectives (exposed)"
        events += _memory_counter(plan, d, actions, mem, live, release)
    # point-to-point: the send on the sender, the same transfer on the receiver, a flow arrow
    sends = comm["send"]
    recv_of = [plan.peer(r.device, r.stage + 1 if r.label.startswith("send F") else r.stage - 1) for r in sends]
    send_lane = _lanes_by_device([(r.device, r.start, r.end) for r in sends])
    recv_lane = _lanes_by_device([(dst, r.start, r.end) for r, dst in zip(sends, recv_of)])
    for i, (r, dst) in enumerate(zip(sends, recv_of)):
        st, rt = LANE_BASE["send"] + send_lane[i], LANE_BASE["recv"] + recv_lane[i]
        threads[(r.device, st)] = _lane_name("send", send_lane[i])
        threads[(dst, rt)] = _lane_name("recv", recv_lane[i])
        args = {"stage": r.stage, "microbatch": r.microbatch, "bytes": r.nbytes, "group": [r.device, dst]}
        events.append(_slice(r.label, "pp", r.start, r.end, r.device, st, {**args, "to": dst}))
        events.append(_slice("recv" + r.label[4:], "pp", r.start, r.end, dst, rt, {**args, "from": r.device}))
        common = {"name": r.label, "cat": "pp", "id": i}
        events.append({**common, "ph": "s", "ts": _ns(r.start) / 1000, "pid": r.device, "tid": st})
        events.append({**common, "ph": "f", "bp": "e", "ts": _ns(r.end) / 1000, "pid": dst, "tid": rt})
    dps = comm["dp"]
    lanes = _lanes_by_device([(r.device, r.start, r.end) for r in dps])
    L = plan.layout
    dim = "dpcp" if L.cp > 1 else "dp"
    dp_groups: dict[int, list[int]] = {}
    for r, lane in zip(dps, lanes):
        tid = LANE_BASE["dp"] + lane
        threads[(r.device, tid)] = _lane_name("dp", lane)
        group = dp_groups.get(r.device)
        if group is None:
            group = dp_groups[r.device] = list(L.group(dim, r.device))
        events.append(_slice(r.label, "dp", r.start, r.end, r.device, tid, {"bytes": r.nbytes, "group": group}))
    for (pid, tid), name in sorted(threads.items()):
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    if link_series:
        net = (max(devices) + 1) if devices else 0
        events.append({"name": "process_name", "ph": "M", "pid": net, "tid": 0, "args": {"name": "network (busiest links)"}})
        for link, series in link_series.items():
            for t, u in series:
                events.append({"name": f"{link} utilisation (%)", "ph": "C", "ts": _ns(t) / 1000, "pid": net,
                               "args": {"%": 100 * u}})
    return events


def _lane_name(kind: str, lane: int) -> str:
    return LANE_NAME[kind] + ("" if lane == 0 else f" {lane + 1}")


def _lanes_by_device(items: list[tuple[int, float, float]]) -> list[int]:
    """`_lanes` among the intervals of each device separately."""
    by: dict[int, list[int]] = {}
    for i, (d, _, _) in enumerate(items):
        by.setdefault(d, []).append(i)
    out = [0] * len(items)
    for idx in by.values():
        for i, lane in zip(idx, _lanes([(items[i][1], items[i][2]) for i in idx])):
            out[i] = lane
    return out


def write_trace(path: str | Path, plan, records: list[Record], device_names: dict[int, str] | None = None,
                meta: dict[str, Any] | None = None, link_series: dict[str, list[tuple[float, float]]] | None = None) -> Path:
    path = Path(path)
    doc = {"traceEvents": trace_events(plan, records, device_names, link_series), "displayTimeUnit": "ms",
           "otherData": meta or {}}
    path.write_text(json.dumps(doc))
    return path
