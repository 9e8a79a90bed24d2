"""The flow network's bookkeeping of shared link classes (simtrain.network.sharing): a
newcomer that fits in the spare capacity of its links, leaving every other rate as it is,
gets the rate a full max-min solve of its component gives, and a bundle whose neighbours
all keep a bottleneck without it leaves their rates as they are; random traffic on
random links finishes at the same times either way."""

import random
from types import SimpleNamespace

import pytest
import simpy

from simtrain.network.flows import FlowNetwork


class Links:
    """A stand-in topology: link -> capacity (bytes/s)."""

    def __init__(self, caps: dict):
        self.caps = caps

    def link(self, edge):
        return SimpleNamespace(capacity=self.caps[edge])


def run(seed: int, shortcut: bool) -> tuple[list[float], int]:
    rng = random.Random(seed)
    links = [("l", i) for i in range(rng.randint(3, 10))]
    caps = {l: rng.choice([1.0, 2.0, 5.0]) * rng.uniform(0.8, 1.2) for l in links}
    env = simpy.Environment()
    net = FlowNetwork(env, Links(caps))
    kinds = []
    for k in range(rng.randint(2, 8)):  # bundle types: a long "ring" or a short "transfer"
        n = rng.randint(1, len(links)) if rng.random() < 0.3 else rng.randint(1, 2)
        net.register(("kind", k), {l: float(rng.choice([1, 1, 2])) for l in rng.sample(links, n)})
        kinds.append(("kind", k))
    fitted = [0]
    fits, unchanged = net._fits, net._unchanged_without

    def counted(b):
        x = fits(b) if shortcut else None
        fitted[0] += x is not None
        return x

    def kept(b, neighbours):
        same = unchanged(b, neighbours) if shortcut else False
        fitted[0] += same
        return same

    net._fits, net._unchanged_without = counted, kept
    done: list[float] = []

    def send(key, nbytes: float, latency: float, at: float):
        yield env.timeout(at)
        yield net.transfer(key, nbytes, latency)
        done.append(env.now)

    for _ in range(rng.randint(5, 40)):
        env.process(send(rng.choice(kinds), rng.uniform(0.1, 3.0), rng.choice([0.0, 0.0, 0.05]), rng.uniform(0.0, 4.0)))
    env.run()
    return sorted(done), fitted[0]


@pytest.mark.parametrize("seed", range(60))
def test_rates_kept_where_max_min_keeps_them_finish_as_solved_anew(seed: int) -> None:
    fast, _ = run(seed, True)
    full, never = run(seed, False)
    assert never == 0
    assert fast == pytest.approx(full, rel=1e-9)


def test_the_shortcuts_are_taken():
    assert sum(run(seed, True)[1] for seed in range(60)) > 40


def test_component_solves_are_memoized_without_changing_a_rate(monkeypatch):
    # The max-min filling is a pure function of a component's inputs (each bundle's shared
    # classes and own level, in start order, on fixed class capacities), and an MoE step repeats
    # the same exchange patterns every micro-batch: FlowNetwork keeps the solved ones. With the
    # memo and without it (cleared before every solve) the run is the same to the bit, and the
    # memo solves DeepSeek-V3's 1,024-GPU step with under 1% of the fillings.
    import simtrain.network.flows as flows
    from simtrain.analysis.run import simulate
    from simtrain.scenario.config import load_scenario

    calls: list[int] = []
    real = flows.fill
    monkeypatch.setattr(flows, "fill", lambda *a: calls.append(1) or real(*a))
    s = load_scenario("nemo-moe-deepseek-v3-1024")
    memo = simulate(s)
    with_memo = len(calls)
    calls.clear()
    monkeypatch.setattr(flows, "FILL_CACHE", -1)
    direct = simulate(s)
    assert (memo.step_time_s, memo.breakdown, memo.extra.get("memory")) == (direct.step_time_s, direct.breakdown,
                                                                              direct.extra.get("memory"))
    assert with_memo < 0.01 * len(calls) and len(calls) > 1000


def test_a_newcomers_rate_does_not_depend_on_the_order_its_co_users_are_visited():
    # A set of bundles iterates in the order they lie in memory, which differs between runs: the
    # load beside a newcomer is summed exactly (math.fsum), so its rate is the same either way.
    # Summed left to right, 1.0 then ten 1e-16 loses them all; the other way round keeps 1e-15.
    from simtrain.network.sharing import Sharing

    def bundle(rate: float) -> SimpleNamespace:
        return SimpleNamespace(rate=rate, start=0.0, classes=[(0, 1.0)], levels=None, shared={0})

    newcomer = bundle(0.0)
    others = [bundle(1.0)] + [bundle(1e-16) for _ in range(10)]
    rates = []
    for order in (others, others[::-1]):
        net = SimpleNamespace(_users={0: [newcomer, *order]}, _class_capacity=[3.0], env=SimpleNamespace(_now=0.0),
                              rate_log=None)
        net._levels = lambda b, net=net: Sharing._levels(net, b)
        rates.append(Sharing._fits(net, newcomer))
    assert rates[0] == rates[1] == 3.0 - 1.000000000000001
