"""Expert-parallel token dispatch and combine as flows over the topology.

An MoE layer's dispatch sends each token's hidden state (h elements) from the rank that
holds it to the EP ranks that hold its top-k experts; the combine brings the expert
outputs back (the same traffic, reversed); the backward pass repeats both with gradients.
Here one exchange is one *bundle* on the flow network (simtrain.network.flows): its flows
start together and, paced together, finish together (the exchange completes when the
most loaded flow does), sharing links max-min fairly with every other transfer, so an EP
group spanning nodes contends with DP and PP traffic on the NICs. Flows of unequal size
are one bundle whose load on each link is the sum of its flows' sizes relative to the
bundle's reference size (`nbytes` per unit weight).

Traffic of one source rank s with T tokens of b bytes each, k experts per token, and
share(d) the fraction of (token, expert) assignments that land on EP rank d (1/EP each
when balanced; `shares`):
- plain all-to-all (Megatron-LM's all-to-all dispatcher, NCCL): one copy per (token,
  expert) pair, s -> d carries T * k * share(d) * b bytes (d != s; NVLink inside a node,
  the network across nodes).
- node-limited (DeepSeek-V3 §3.2.2 and its dispatch kernels, `node_limit` M): the experts
  of a token lie on at most M of the G nodes of the EP group; the token crosses the
  network once per destination node, to the GPU with the sender's local index there
  (same rail), which forwards it over NVLink to the GPUs holding its experts. With the
  experts spread evenly and a token's M nodes and k experts chosen uniformly, a given
  node is reached with probability
      p_node = (M/G) * (1 - C((M-1)*n, k) / C(M*n, k)),    n = experts per node,
  and a given GPU of it (e experts each) with p_gpu = (M/G) * (1 - C(M*n - e, k) / C(M*n, k)).
  s -> relay on node N carries T * p_node * b; the relay forwards T * p_gpu * b to each
  GPU of N (itself included: no transfer); s sends T * p_gpu * b over NVLink to each other
  GPU of its own node. Without a limit (M = G) this is the same hierarchical scheme.
The closed forms these reduce to on idle links are tested (tests/test_moe.py).
"""

from __future__ import annotations

from math import comb
from typing import Sequence

from simtrain.hardware.topology import Link, Topology


def _by_node(group: Sequence[int], topo: Topology) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for r in group:
        out.setdefault(topo.node_of(r), []).append(r)
    return out


def reach(experts: int, k: int, nodes: int, gpus_per_node: int, node_limit: int) -> tuple[float, float]:
    """(p_node, p_gpu): probability that one token reaches a given node / a given GPU of
    the EP group, with its experts spread evenly and routing uniform (see module doc)."""
    m = min(node_limit or nodes, nodes)
    n = experts // nodes  # experts per node
    e = n // gpus_per_node  # experts per GPU
    pool = m * n
    p_node = (m / nodes) * (1 - comb((m - 1) * n, k) / comb(pool, k))
    p_gpu = (m / nodes) * (1 - comb(pool - e, k) / comb(pool, k))
    return p_node, p_gpu


def dispatch_bytes(group: Sequence[int], topo: Topology, tokens: float, token_bytes: float, k: int, experts: int,
                   shares: Sequence[float] | None = None, node_limit: int = 0) -> dict[tuple[int, int], float]:
    """Bytes of one dispatch over the EP `group`, per (src, dst) pair, every member sending
    its `tokens` (the combine is the same with src and dst swapped)."""
    ep = len(group)
    shares = list(shares) if shares is not None else [1.0 / ep] * ep
    flows: dict[tuple[int, int], float] = {}
    if not node_limit:
        for s in group:
            for i, d in enumerate(group):
                if d != s and shares[i] > 0:
                    flows[(s, d)] = tokens * k * shares[i] * token_bytes
        return flows
    nodes = _by_node(group, topo)
    g = len(next(iter(nodes.values())))
    if any(len(v) != g for v in nodes.values()) or experts % (len(nodes) * g):
        raise ValueError("node-limited dispatch needs the same number of EP ranks on every node and experts spread evenly")
    p_node, p_gpu = reach(experts, k, len(nodes), g, node_limit)
    uniform = 1.0 / ep
    index = {r: i for i, r in enumerate(group)}
    for s in group:
        home = topo.node_of(s)
        local = nodes[home].index(s)
        for node, members in nodes.items():
            load = sum(shares[index[d]] for d in members) / (g * uniform)  # the node's load vs balanced
            if node == home:
                for d in members:
                    if d != s:
                        flows[(s, d)] = flows.get((s, d), 0.0) + tokens * min(1.0, p_gpu * shares[index[d]] / uniform) * token_bytes
                continue
            relay = members[local]
            flows[(s, relay)] = flows.get((s, relay), 0.0) + tokens * min(1.0, p_node * load) * token_bytes
            for d in members:
                if d != relay:
                    f = tokens * min(1.0, p_gpu * shares[index[d]] / uniform) * token_bytes
                    flows[(relay, d)] = flows.get((relay, d), 0.0) + f
    return flows


def flows_load(flows: dict[tuple[int, int], float], topo: Topology, unit: float,
               copies: Sequence[int] = (0,)) -> dict[Link, float]:
    """Link load of a bundle of unequal flows: each flow counts size / `unit` (the bundle's
    bytes per unit weight), spread as the topology routes it, in every copy."""
    load: dict[Link, float] = {}
    route_load = getattr(topo, "route_load", None)
    get = load.get
    for off in copies:
        for (s, d), nbytes in flows.items():
            w = nbytes / unit
            if route_load is None:
                for link in topo.route(s + off, d + off):
                    load[link] = get(link, 0.0) + w
            else:
                for link, frac in route_load(s + off, d + off):
                    load[link] = get(link, 0.0) + w * frac
    return load


def flows_latency(flows: dict[tuple[int, int], float], topo: Topology) -> float:
    """One latency step: the slowest route among the flows."""
    return max((topo.route_latency(s, d) for s, d in flows), default=0.0)
