"""Where a simulated step is bounded: the slowest device, the critical path through the
devices' timelines and the busiest link (`run --json`'s `hotspots`)."""

from __future__ import annotations

import bisect
from operator import attrgetter

from simtrain.analysis.metrics import MainStreams, Result
from simtrain.engine.actions import Engine


def hotspots(plan, engine: Engine, result: Result, main: MainStreams | None = None) -> dict:
    """Where the step is bounded: the slowest device and the busiest link.

    The slowest device has the most compute (F, B, W, recompute) on its main stream; with
    identical devices every one ties. The busiest link carried the most bytes relative to
    what it could have carried over the whole step. `main`: what `summarize_main` worked
    out of the main streams (then no pass over every record here).
    """
    if main is not None:
        compute = main.work
        by_dev: dict = _Lazy(main.records)
        latest = main.last_end
    else:
        by_dev, latest = main_by_device(result.records), None
        compute = {}
        work = ("F", "B", "W", "R")
        for d, recs in by_dev.items():  # (each device's records in record order: the same sums)
            c = None
            for r in recs:
                if r.kind in work:
                    c = (0.0 if c is None else c) + (r.end - r.start)
            if c is not None:
                compute[d] = c
    out: dict = {}
    if compute:
        dev = max(compute, key=lambda d: (compute[d], -d))
        c = plan.layout.coord(dev)
        # compare with the devices doing the same work: same pipeline rank (each simulated
        # device counted as many times as the devices of its class)
        peers = sorted((v, plan.classes.size(d)) for d, v in compute.items() if plan.layout.coord(d).pp == c.pp)
        half, seen, median = sum(w for _, w in peers) // 2, 0, peers[-1][0]
        for v, w in peers:
            seen += w
            if seen > half:
                median = v
                break
        out["slowest_device"] = {"rank": dev, "pp": c.pp, "dp": c.dp, "tp": c.tp, "cp": c.cp,
                                 "compute_s": compute[dev], "vs_median_of_stage": compute[dev] / median - 1 if median else 0.0}
    path = critical_path(engine, result, by_dev, latest)
    if path:
        out["critical_path"] = path
    net = engine.net
    step = result.step_time_s
    lost = contention(plan, engine)
    if lost:
        out["contention"] = lost
    best = None
    for cid, busy in net.link_busy.items():
        cap = net._class_capacity[cid]
        util = busy / (cap * step) if step > 0 and cap > 0 else 0.0
        if best is None or util > best[0]:
            best = (util, cid)
    if best:
        util, cid = best
        links = net._class_links[cid]
        u, v = links[0]
        out["busiest_link"] = {"link": f"{u}-{v}", "kind": plan.topology.link((u, v)).kind, "utilization": util,
                               "links_alike": len(links) * (engine.comm.periodic.orbit_size if engine.comm.periodic else 1)}
    return out


def _dims(engine: Engine) -> dict:
    """Process group -> its parallel dimension ("tp", "cp", "dp"), from the groups (group
    classes, simtrain.engine.symmetry) the engine ran."""
    out = {}
    for (dim, _dev), view in engine.classes._views.items():
        out.setdefault(view.group, "dp" if dim in ("dpcp", "edp") else dim)
    return out


def _dim_of(key, dims: dict) -> str:
    """Parallel dimension of a flow-network bundle type: ((op, algo, group, copies), phase)
    for collectives, (op, algo, (src, dst), copies) for point-to-point sends."""
    head = key[0] if isinstance(key, tuple) and key and isinstance(key[0], tuple) else key
    if isinstance(key, tuple) and key and key[0] == "flows":  # expert-parallel all-to-all bundles
        return "ep"
    if isinstance(head, tuple) and len(head) >= 3:
        if head[0] == "send-recv":
            return "pp"
        return dims.get(head[2], "other")
    return "other"


def contention(plan, engine: Engine) -> dict:
    """Seconds each kind of traffic (TP, CP, PP sends, DP/FSDP) took beyond its idle-network
    time because it shared links, summed over its transfers as the simulated devices ran
    them, with the other traffic and the kinds of link it shared. The DP stream is serial,
    so its seconds lengthen that stream one for one; on the main stream (TP, CP) they add
    to the exposed communication."""
    net = engine.net
    if not net.contention:
        return {}
    dims = _dims(engine)
    seconds: dict[str, float] = {}
    for key, extra in net.contention.items():
        d = _dim_of(key, dims)
        seconds[d] = seconds.get(d, 0.0) + extra
    # each link class's set of traffic kinds, worked out once (not once per kind reported)
    users = [{_dim_of(k, dims) for k in keys} for keys in net._class_users]
    out = {}
    for d, sec in sorted(seconds.items(), key=lambda kv: -kv[1]):
        others: set[str] = set()
        kinds: set[str] = set()
        for cid, present in enumerate(users):
            if d not in present:
                continue
            theirs = present - {d}
            if theirs:
                others |= theirs
                u, v = net._class_links[cid][0]
                kinds.add(plan.topology.link((u, v)).kind)
        out[d] = {"seconds": sec, "shared_with": sorted(others), "link_kinds": sorted(kinds)}
    return out


_NONE: dict = {}
_END = attrgetter("end")  # C-level key and getter: cheaper than a lambda per record


def main_by_device(records) -> dict[int, list]:
    """Each device's main-stream records, in record order."""
    by_dev: dict[int, list] = {}
    for r in records:
        if r.stream == "main":
            by_dev.setdefault(r.device, []).append(r)
    return by_dev


class _Lazy(dict):
    """device -> `make(device)`, worked out on first use."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, dev: int):
        out = self[dev] = self.make(dev)
        return out


class _LazyEnds(dict):
    """device -> the ends of its records, sorted by end (its list in `by_dev` sorted in
    place, as the path needs it), worked out on first use."""

    def __init__(self, by_dev: dict[int, list]):
        super().__init__()
        self.by_dev = by_dev

    def __missing__(self, dev: int) -> list[float]:
        recs = self.by_dev[dev]
        recs.sort(key=_END)
        out = self[dev] = list(map(_END, recs))
        return out


def critical_path(engine: Engine, result: Result, by_dev: dict[int, list] | None = None,
                  latest: dict[int, float] | None = None) -> dict:
    """Walk back from the last device to finish: through its own main-stream intervals,
    and across to the sender whenever it was waiting for a pipeline neighbour (or to the
    last-arriving member when it waited for its TP peers). Returns the seconds each device
    and each kind of work contributes to the path (they add up to the step time).
    `by_dev`: `main_by_device(result.records)` when the caller has it (sorted here), and
    `latest`: each device's latest end among them."""
    if by_dev is None:
        by_dev = main_by_device(result.records)
    if latest is None:
        latest = {d: max(map(_END, recs)) for d, recs in by_dev.items()}
    if not latest:
        return {}
    # each device's records sorted by end, and their ends, only for the devices the path
    # visits (a few of thousands); the last to finish is found from the latest ends
    ends = _LazyEnds(by_dev)
    dev = max(latest, key=lambda d: (latest[d], -d))
    t = ends[dev][-1]
    per_dev: dict[int, float] = {}
    per_kind: dict[str, float] = {}
    eps = 1e-12
    causes = engine.waited_on  # device -> {end of a wait: (whom it waited for, when)}
    jumped: set[tuple[int, int]] = set()  # waits already followed to their cause (no cycles at one instant)
    hi = len(ends[dev])  # records of `dev` not yet on the path: [0, hi)
    for _ in range(10 * len(result.records) + 10):
        if t <= eps:
            break
        i = bisect.bisect_right(ends[dev], t + eps, 0, hi) - 1
        if i < 0:
            per_kind["idle"] = per_kind.get("idle", 0.0) + t
            break
        r = by_dev[dev][i]
        if r.end < t - eps:  # a gap on this device: idle time on the path
            per_kind["idle"] = per_kind.get("idle", 0.0) + t - r.end
            t = r.end
            continue
        # a wait (its last piece may be attributed to the communication that held up the
        # sender: simtrain.analysis.attribution) ends where the engine noted whom it waited for
        cause = causes.get(dev, _NONE).get(r.end) if r.kind in ("bubble", "pp", "tp", "dp", "cp") else None
        if cause is not None and cause[0] != dev and (dev, i) not in jumped:
            jumped.add((dev, i))
            sender, sent = cause
            # the transfer itself (send -> arrival) stays on the path as communication
            if r.end > sent:
                per_kind["pp" if r.kind != "tp" else "tp"] = per_kind.get("pp" if r.kind != "tp" else "tp", 0.0) + r.end - max(sent, 0.0)
            # skip back over this device's whole wait (bubble + pp parts) to the sender
            dev, t = sender, min(sent, r.end)
            hi = len(ends[dev])
            continue
        per_dev[dev] = per_dev.get(dev, 0.0) + r.duration
        per_kind[r.kind] = per_kind.get(r.kind, 0.0) + r.duration
        t, hi = r.start, i  # a record shorter than eps must not be found again
    L = engine.plan.layout
    top = sorted(per_dev.items(), key=lambda kv: -kv[1])[:5]
    return {
        "devices": [{"rank": d, "pp": L.coord(d).pp, "seconds": v} for d, v in top],
        "by_kind": dict(sorted(per_kind.items(), key=lambda kv: -kv[1])),
    }
