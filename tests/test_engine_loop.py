"""The event loop's shortcuts give exactly what plain simpy gives: the inlined loop
(simtrain.engine.loop.drain) against `env.run()`, the data-parallel stream driven by
callbacks against a simpy process per collective (as before), and the collector paused
during a run (simtrain.engine.gcpause) left as it was found. Records are compared as
lists: same floats, same order."""

import gc

import simpy

from simtrain.engine import actions
from simtrain.engine.actions import Engine
from simtrain.engine.gcpause import paused_gc
from simtrain.engine.plan import make_plan
from simtrain.scenario.config import load_scenario

# per-rank with DP buckets during the last backward, parameter all-gathers (distributed
# optimizer) and a straggler, so that the DP streams queue behind one another
SMALL = ['model.name="llama3-8b"', "cluster.gpus=64", "parallel.tp=2", "parallel.pp=4", "parallel.dp=8",
         "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=64",
         "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"', 'engine.mode="per-rank"',
         "whatif.slow_devices=[6]", "whatif.slowdown=1.2"]


def _records(extra=(), patch=None):
    plan = make_plan(load_scenario(None, SMALL + list(extra)))
    eng = Engine(plan)
    if patch is not None:
        patch(eng)
    return eng.run(None), eng


def _process_dp_launch(self, dev, op, size, label, on_done=None, delay=0.0):
    """The DP stream as it was: a simpy process per collective (waiting `delay` first: a
    bucket's passes on the compute stream, stack.grad_buffer_passes)."""
    prev = self.dp_tail.get(dev)
    done = on_done or self.env.event()

    def proc():
        if delay > 0:
            yield self.env.timeout(delay)
        if prev is not None and not prev.processed:
            yield prev
        t0 = self.env.now
        if self.sm_loads is not None:  # NCCL's blocks held while it runs (simtrain.engine.smload)
            self._sm_hold(dev, self.dp_dim)
        yield from self.collective(dev, self.dp_dim, op, size)
        if self.sm_loads is not None:
            self._sm_release(dev, self.dp_dim)
        self._rec(dev, "dp", label, t0, stream="comm", nbytes=size)
        done.succeed()

    self.env.process(proc())
    self.dp_tail[dev] = done
    self.dp_pending[dev].append(done)
    return done


def test_inlined_loop_equals_simpy_run(monkeypatch):
    fast, _ = _records()
    monkeypatch.setattr(actions, "drain", lambda env: env.run())
    plain, _ = _records()
    assert fast == plain and len(fast) > 1000


def test_dp_stream_by_callbacks_equals_a_process_per_collective():
    for extra in ([], ["parallel.zero=0"], ["parallel.overlap_grad_reduce=false"]):
        fast, eng = _records(extra)
        plain, eng2 = _records(extra, lambda e: setattr(e, "_dp_launch", _process_dp_launch.__get__(e)))
        assert any(r.kind == "dp" and r.stream == "comm" for r in fast)
        assert fast == plain, extra
        assert eng.done_at == eng2.done_at
        assert next(eng.env._eid) == next(eng2.env._eid)  # (the event count reported stays the same)


def test_loop_raises_a_failed_event_as_simpy_does():
    env = simpy.Environment()
    env.event().fail(ValueError("boom"))
    try:
        actions.drain(env)
    except ValueError as e:
        assert str(e) == "boom"
    else:
        raise AssertionError("the failure must propagate")


def test_collector_paused_inside_and_restored_after():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
        junk = [[i] for i in range(10)]
    assert gc.isenabled() and junk
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a collector the caller switched off stays off
    finally:
        gc.enable()


def test_batched_finishes_equal_one_event_per_finish(monkeypatch):
    from simtrain.network.flows import FlowNetwork

    for extra in ([], ["parallel.tp=4", "parallel.dp=4"]):
        fast, eng = _records(extra)
        with monkeypatch.context() as m:
            m.setattr(FlowNetwork, "_at_finish", lambda self, t, b: self._at(t, (b, 1)).callbacks.append(self._finish))
            plain, eng2 = _records(extra)
        assert fast == plain, extra
        assert next(eng.env._eid) == next(eng2.env._eid)


def test_batched_finishes_yield_to_an_urgent_event_scheduled_meanwhile():
    """A finish that schedules an urgent event at the same instant: the rest of the batch
    waits for it, as separate events would."""
    from heapq import heappush

    from simpy.events import NORMAL, URGENT

    from simtrain.network.batch import Batching

    def run(batched: bool) -> list[str]:
        env, log = simpy.Environment(), []

        class Net(Batching):
            def __init__(self):
                self.env = env

            def _end(self, b, version):
                log.append(b)
                if b in ("a", "c"):
                    ev = simpy.Event(env)
                    ev._ok, ev._value = True, None
                    ev.callbacks.append(lambda _e, b=b: log.append("urgent after " + b))
                    env.schedule(ev, URGENT if b == "a" else NORMAL)

        net = Net()
        for b in "abcd":
            if batched:
                net._at_finish(1.0, b)
            else:
                ev = simpy.Event(env)
                ev._ok, ev._value = True, (b, 1)
                ev.callbacks.append(lambda e: net._end(*e._value))
                heappush(env._queue, (1.0, NORMAL, next(env._eid), ev))
        actions.drain(env)
        return log

    assert run(True) == run(False) == ["a", "urgent after a", "b", "c", "d", "urgent after c"]


def test_arrivals_in_one_entry_equal_succeeding_each(monkeypatch):
    from simtrain.engine.loop import Arrivals

    for extra in ([], ["parallel.tp=4", "parallel.dp=4"]):
        fast, eng = _records(extra)
        with monkeypatch.context() as m:
            m.setattr(Arrivals, "succeed", lambda self, ev: ev.succeed())
            plain, eng2 = _records(extra)
        assert fast == plain, extra
        assert next(eng.env._eid) == next(eng2.env._eid)


def test_arrivals_yield_to_an_urgent_event_scheduled_meanwhile():
    from simpy.events import URGENT

    from simtrain.engine.loop import Arrivals

    def run(batched: bool) -> list[str]:
        env, log = simpy.Environment(), []
        arrived = Arrivals(env)
        evs = {b: env.event() for b in "abcd"}
        for b, ev in evs.items():
            def cb(_e, b=b):
                log.append(b)
                if b == "a":
                    u = simpy.Event(env)
                    u._ok, u._value = True, None
                    u.callbacks.append(lambda _u: log.append("urgent"))
                    env.schedule(u, URGENT)
            ev.callbacks.append(cb)

        def start(_e):
            for ev in evs.values():
                arrived.succeed(ev) if batched else ev.succeed()
        env.timeout(1.0).callbacks.append(start)
        actions.drain(env)
        return log

    assert run(True) == run(False) == ["a", "urgent", "b", "c", "d"]
