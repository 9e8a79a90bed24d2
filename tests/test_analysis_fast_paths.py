"""The analysis shortcuts for large per-rank runs give what the direct computations give.

Each shortcut (blame for the end-of-step idle time shared between devices that finish
together, stages grouped with one look-up per device, attributed records spliced from
slices, the traffic kinds of each link class worked out once) is compared here with the
plain per-device / per-record computation it replaced, on small per-rank runs where the
shortcut has something to do.
"""

from simtrain.analysis import attribution, hotspots as hs
from simtrain.analysis.metrics import devices_by_stage, tail_parts
from simtrain.analysis.run import simulate
from simtrain.engine.actions import Engine
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario

# Llama 3 8B, TP2 PP4 DP8 per-rank (the bench's quick per-rank case), with a straggler so
# that devices finish at different instants; FSDP so that some waits are blamed on DP
SMALL = ['model.name="llama3-8b"', "cluster.gpus=64", "parallel.tp=2", "parallel.pp=4", "parallel.dp=8",
         "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=64",
         "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"', 'engine.mode="per-rank"',
         "whatif.slow_devices=[6]", "whatif.slowdown=1.2"]


def _plan_and_records(extra=()):
    plan = make_plan(load_scenario(None, SMALL + list(extra)))
    engine = Engine(plan)
    return plan, engine, engine.run(None)


def test_attributed_records_are_the_originals_with_each_replaced_wait_spliced_in_place():
    plan, _, records = _plan_and_records(["parallel.zero=3"])
    out, tl = attribution.attribute_waits(plan, records)
    assert tl.replaced, "the case must have attributed waits"
    expected = [p for r in records for p in tl.replaced.get(id(r), (r,))]
    assert out == expected
    assert len(out) > len(records) or any(a is not b for a, b in zip(out, records))


def test_shared_tail_blame_equals_blame_worked_out_per_device():
    plan, _, records = _plan_and_records()
    recs, tl = attribution.attribute_waits(plan, records)
    last_end: dict[int, float] = {}
    for r in recs:
        if r.stream == "main":
            last_end[r.device] = max(last_end.get(r.device, 0.0), r.end)
    step = max(r.end for r in recs)
    last = max(last_end, key=lambda d: (last_end[d], -d))
    got = tail_parts(tl, last, last_end, step)
    assert len(set(last_end.values())) < len(last_end), "some devices must finish together"
    assert any(got[d] for d in got), "some devices must idle at the end"
    assert got == {d: attribution.tail_blame(tl, last, t0, step) for d, t0 in last_end.items()}


def test_devices_by_stage_equals_filtering_every_stage():
    plan, _, _ = _plan_and_records()
    L, devices = plan.layout, plan.simulated
    got = devices_by_stage(L, devices)
    assert len(got) == L.pp > 1
    for pr in range(L.pp):
        assert got[pr] == [d for d in devices if L.coord(d).pp == pr]


def _contention_reference(plan, engine) -> dict:
    """The former computation: every link class's keys classified once per kind reported."""
    net, dims = engine.net, hs._dims(engine)
    seconds: dict[str, float] = {}
    for key, extra in net.contention.items():
        d = hs._dim_of(key, dims)
        seconds[d] = seconds.get(d, 0.0) + extra
    out = {}
    for d, sec in sorted(seconds.items(), key=lambda kv: -kv[1]):
        others, kinds = set(), set()
        for cid, keys in enumerate(net._class_users):
            if not [k for k in keys if hs._dim_of(k, dims) == d]:
                continue
            theirs = {hs._dim_of(k, dims) for k in keys} - {d}
            if theirs:
                others |= theirs
                u, v = net._class_links[cid][0]
                kinds.add(plan.topology.link((u, v)).kind)
        out[d] = {"seconds": sec, "shared_with": sorted(others), "link_kinds": sorted(kinds)}
    return out


def test_contention_equals_classifying_every_key_per_kind():
    # two traffic kinds sharing links: data-parallel reductions beside pipeline sends
    plan, engine, _ = _plan_and_records(['cluster.topology="example-classic-2to1"'])
    got = hs.contention(plan, engine)
    assert got, "the case must have contention"
    assert got == _contention_reference(plan, engine)


def _reference_kinds(tl, dev, t0, t1):
    """The former `_Timeline.kinds`: max and min per piece."""
    recs, starts = tl._sorted(dev)
    i = max(0, attribution.bisect.bisect_right(starts, t0) - 1)
    out, t = [], t0
    while i < len(recs) and recs[i].start < t1:
        for p in tl.replaced.get(id(recs[i]), (recs[i],)):
            a, b = max(p.start, t), min(p.end, t1)
            if b <= a:
                continue
            if a > t:
                out.append((t, a, "bubble"))
            out.append((a, b, attribution._blame_kind(p.kind)))
            t = b
        i += 1
    if t < t1:
        out.append((t, t1, "bubble"))
    return out


def _reference_attribution(plan, records):
    """The former attribution: every wait's pieces merged before deciding to keep it, then
    the record list rebuilt one record at a time by identity."""
    tl = attribution._Timeline(records)
    waits = [r for r in records if r.kind == "bubble" and r.stream == "main" and attribution._sender_stage(r) is not None]
    S = len(plan.schedule.placement)
    for r in sorted(waits, key=lambda r: (r.end, r.start)):
        stage = attribution._sender_stage(r)
        if not 0 <= stage < S:
            continue
        sender = plan.peer(r.device, stage)
        if sender == r.device:
            continue
        pieces = attribution._merge(_reference_kinds(tl, sender, r.start, r.end))
        if len(pieces) == 1 and pieces[0][2] == "bubble":
            continue
        tl.replaced[id(r)] = [r._replace(kind=k, start=a, end=b) for a, b, k in pieces]
    return [p for r in records for p in tl.replaced.get(id(r), (r,))], tl


def test_attribution_equals_the_reference_computation():
    # FSDP, also on an oversubscribed fabric: waits whose senders waited on DP (replaced,
    # in chains) beside plain pipeline waits (kept)
    for extra in (["parallel.zero=3"], ["parallel.zero=3", 'cluster.topology="example-classic-2to1"'], []):
        plan, _, records = _plan_and_records(extra)
        got, tl = attribution.attribute_waits(plan, records)
        want, ref = _reference_attribution(plan, records)
        assert got == want
        assert len(tl.replaced) == len(ref.replaced)
        # the attributed timelines answer alike over windows between record boundaries
        for d in list(tl.by_dev)[:8]:
            bounds = sorted({r.start for r in tl.by_dev[d]} | {r.end for r in tl.by_dev[d]})
            for t0, t1 in zip(bounds[::7], bounds[3::7]):
                assert tl.kinds(d, t0, t1) == _reference_kinds(tl, d, t0, t1)


def test_waits_skipped_without_blamed_overlap_equal_walking_every_sender(monkeypatch):
    """attribute_waits asks BlamedSpans before walking a sender's records: the same
    output as walking them for every wait, with FSDP (many blamed gathers) and without."""
    from simtrain.analysis import blamed

    for extra in (["parallel.zero=3"], []):
        plan, _, records = _plan_and_records(extra)
        fast, tl = attribution.attribute_waits(plan, records)
        with monkeypatch.context() as m:
            m.setattr(blamed.BlamedSpans, "overlaps", lambda self, dev, t0, t1: True)
            slow, tl2 = attribution.attribute_waits(plan, records)
        assert fast == slow
        assert [[tuple(p) for p in v] for v in tl.replaced.values()] == [[tuple(p) for p in v] for v in tl2.replaced.values()]
        if extra:
            assert tl.replaced, "the case must have attributed waits"


def test_blamed_spans_overlap_equals_checking_every_span():
    import random

    from simtrain.analysis.blamed import BlamedSpans
    from simtrain.engine.timeline import Record

    rng = random.Random(7)
    spans: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    recs = []
    for _ in range(40):
        d, s = rng.randrange(2), rng.uniform(0, 10)
        e = s + rng.uniform(0.01, 2)
        spans[d].append((s, e))
        recs.append(Record(d, "main", "dp", "wait dp", s, e))
    b = BlamedSpans(recs)
    for step in range(400):
        if step % 40 == 0:  # pieces of attributed waits join as they are attributed
            d, s = rng.randrange(3), rng.uniform(0, 10)
            e = s + rng.uniform(0.01, 1)
            spans.setdefault(d, []).append((s, e))
            b.add(d, s, e)
        d, t0 = rng.randrange(3), rng.uniform(-1, 11)
        t1 = t0 + rng.uniform(0.001, 1)
        assert b.overlaps(d, t0, t1) == any(min(t1, e) > max(t0, s) for s, e in spans.get(d, ())), (d, t0, t1)


def _free_comm_step_every_record(plan, records):
    """free_comm_step as it was: every device's records summed, then the chains read."""
    from simtrain.schedule.validate import rank_ends

    cost, opt = {}, {}
    for r in records:
        if r.stream != "main":
            continue
        if r.kind in ("F", "B", "W", "R"):
            key = (r.device, r.stage, r.microbatch, "B" if r.kind == "R" else r.kind)
            cost[key] = cost.get(key, 0.0) + r.end - r.start
        elif r.kind == "opt":
            opt[r.device] = opt.get(r.device, 0.0) + r.end - r.start
    sched, L = plan.schedule, plan.layout
    varied = bool(plan.speed) or plan.scenario.whatif.compute_jitter > 0
    heads = [d for d in plan.simulated if L.coord(d).pp == 0]
    chains = [[plan.classes.peer(d, p) for p in range(L.pp)] for d in (heads if varied else heads[:1])]
    step = 0.0
    for chain in chains:
        costs = [[cost.get((chain[sched.placement[a.stage]], a.stage, a.microbatch, a.kind), 0.0)
                  for a in sched.actions.get(r, ())] for r in range(sched.pp)]
        ends = rank_ends(sched, costs)
        for rank in sched.actions:
            step = max(step, max(ends[rank], default=0.0) + opt.get(chain[rank], 0.0))
    return step


def test_free_comm_step_reading_only_the_chains_devices_equals_summing_every_device():
    plain = [o for o in SMALL if not o.startswith("whatif.")]  # no straggler: one replica's chain
    for sets in (SMALL, plain):
        plan = make_plan(load_scenario(None, sets))
        records = Engine(plan).run(None)
        assert not plan.symmetric
        assert attribution.free_comm_step(plan, records) == _free_comm_step_every_record(plan, records)
        # from the attributed timeline's per-device lists (what summarize hands it)
        attributed, tl = attribution.attribute_waits(plan, records)
        assert attribution.free_comm_step(plan, attributed, tl.by_dev) == _free_comm_step_every_record(plan, attributed)


def test_hotspots_from_what_summarize_worked_out_equal_hotspots_from_the_records():
    """summarize_main hands the hotspots each device's work seconds, last end and its
    attributed records (built on demand for the devices the critical path visits): the
    same hotspots as grouping result.records again, with attributed waits and without."""
    from simtrain.analysis.metrics import summarize_main

    for extra in (["parallel.zero=3"], []):
        plan, engine, records = _plan_and_records(extra)
        result, main = summarize_main(plan, records)
        by_dev = hs.main_by_device(result.records)
        assert all(main.records(d) == recs for d, recs in by_dev.items())
        assert main.last_end == {d: max(r.end for r in recs) for d, recs in by_dev.items()}
        got = hs.hotspots(plan, engine, result, main)
        assert got["critical_path"] and got["slowest_device"]
        assert got == hs.hotspots(plan, engine, result)


def test_slowest_device_from_the_shared_grouping_equals_summing_every_record():
    r = simulate(load_scenario(None, SMALL))
    compute: dict[int, float] = {}
    for rec in r.records:
        if rec.stream == "main" and rec.kind in ("F", "B", "W", "R"):
            compute[rec.device] = compute.get(rec.device, 0.0) + rec.duration
    dev = max(compute, key=lambda d: (compute[d], -d))
    got = r.extra["hotspots"]["slowest_device"]
    assert (got["rank"], got["compute_s"]) == (dev, compute[dev])
