"""Fat-tree routes for many flows at once (numpy), as integer link ids.

The same routes and fractions as `FatTree.route_load` (aggregated or per-spine detail,
adaptive or ECMP) and `FatTree.route_latency`, for arrays of (src, dst): what the
what-if classes (simtrain.engine.refine) need for every flow of a 16,384-GPU cluster.
A link id is code << 40 | index:
    0 gpu->nvsw  1 nvsw->gpu  2 gpu->leaf  3 leaf->gpu            (index: the GPU)
    4 leaf->spines*  5 spines*->leaf                              (the leaf)
    6 pod->cores*  7 cores*->pod                                  (the pod)
    8 leaf->spine  9 spine->leaf                                  (leaf * S + k)
    10 spine->core  11 core->spine                                ((pod * S + k) * C + m)
`decode` turns ids back into the named links of `FatTree.link`.
"""

from __future__ import annotations

import numpy as np

SHIFT = 40
MASK = (1 << SHIFT) - 1


def _id(code: int, index: np.ndarray) -> np.ndarray:
    return (np.int64(code) << np.int64(SHIFT)) | index.astype(np.int64)


def leaf_of(ft, gpu: np.ndarray) -> np.ndarray:
    g, npl = ft.gpus_per_node, ft.fabric.nodes_per_leaf
    node, local = gpu // g, gpu % g
    if ft.fabric.rail_optimized:
        return (node // npl) * g + local
    return node // npl


def pod_of_leaf(ft, leaf: np.ndarray) -> np.ndarray:
    return leaf // ft.leaves_per_pod if ft.three_tier else np.zeros_like(leaf)


def routes(ft, src: np.ndarray, dst: np.ndarray, detailed=False,
           ecmp: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flow index, link id, fraction of the flow) for every link of every route;
    `detailed` as in `FatTree.route_load` (True, False, or (leaves, pods) to list per link);
    `ecmp`: the single hashed path of `FatTree.route` whatever the routing."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    g = ft.gpus_per_node
    S, C = ft.num_spines, ft.cores_per_plane
    flow = np.arange(len(src), dtype=np.int64)
    node_s, node_d = src // g, dst // g
    ls, ld = leaf_of(ft, src), leaf_of(ft, dst)
    ps, pd = pod_of_leaf(ft, ls), pod_of_leaf(ft, ld)
    same_node = (node_s == node_d) & (src != dst)
    same_leaf = (ls == ld) & ~same_node & (src != dst)
    fabric = (ls != ld) & ~same_node
    cross = fabric & (ps != pd)
    out_f, out_id, out_x = [], [], []

    def emit(mask: np.ndarray, ids: np.ndarray, frac: float) -> None:
        out_f.append(flow[mask])
        out_id.append(ids)
        out_x.append(np.full(int(mask.sum()), frac))

    emit(same_node, _id(0, src[same_node]), 1.0)
    emit(same_node, _id(1, dst[same_node]), 1.0)
    up = same_leaf | fabric
    emit(up, _id(2, src[up]), 1.0)
    emit(up, _id(3, dst[up]), 1.0)
    if fabric.any():
        f_ls, f_ld = ls[fabric], ld[fabric]
        if ecmp or not ft.adaptive:  # ECMP: one hashed spine (and core) per flow
            h = src[fabric] * 2654435761 + dst[fabric] * 40503
            k = h % S
            emit(fabric, _id(8, f_ls * S + k), 1.0)
            emit(fabric, _id(9, f_ld * S + k), 1.0)
            if cross.any():
                hc = src[cross] * 2654435761 + dst[cross] * 40503
                kc = hc % S
                m = (hc // S) % max(C, 1)
                emit(cross, _id(10, (ps[cross] * S + kc) * C + m), 1.0)
                emit(cross, _id(11, (pd[cross] * S + kc) * C + m), 1.0)
        else:
            if detailed is True or detailed is False:
                du = dd = np.full(len(src), bool(detailed))
                pu = pdn = du
            else:
                leaves = np.fromiter(detailed[0], dtype=np.int64, count=len(detailed[0]))
                pods = np.fromiter(detailed[1], dtype=np.int64, count=len(detailed[1]))
                du, dd, pu, pdn = np.isin(ls, leaves), np.isin(ld, leaves), np.isin(ps, pods), np.isin(pd, pods)
            for mask, code, leaf in ((fabric & ~du, 4, ls), (fabric & ~dd, 5, ld)):
                emit(mask, _id(code, leaf[mask]), 1.0)
            for mask, code, leaf in ((fabric & du, 8, ls), (fabric & dd, 9, ld)):
                for k in range(S):
                    emit(mask, _id(code, leaf[mask] * S + k), 1.0 / S)
            if cross.any():
                for mask, code, pod in ((cross & ~pu, 6, ps), (cross & ~pdn, 7, pd)):
                    emit(mask, _id(code, pod[mask]), 1.0)
                for mask, code, pod in ((cross & pu, 10, ps), (cross & pdn, 11, pd)):
                    for k in range(S):
                        for m in range(C):
                            emit(mask, _id(code, (pod[mask] * S + k) * C + m), 1.0 / (S * C))
    if not out_f:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0)
    return np.concatenate(out_f), np.concatenate(out_id), np.concatenate(out_x)


def latency(ft, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """`FatTree.route_latency` for every flow."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    g = ft.gpus_per_node
    ls, ld = leaf_of(ft, src), leaf_of(ft, dst)
    nic, up, core = 2 * ft._nic.latency, 2 * ft._up.latency, 2 * ft._core.latency
    out = np.where(ls != ld, nic + up, nic)  # (rail-optimized: a node's GPUs sit on different leaves)
    out = np.where((ls != ld) & (pod_of_leaf(ft, ls) != pod_of_leaf(ft, ld)), out + core, out)
    out = np.where(src // g == dst // g, 2 * ft._nvl.latency, out)
    return np.where(src == dst, 0.0, out)


def decode(ft, link_id: int):
    code, i = int(link_id) >> SHIFT, int(link_id) & MASK
    g, S, C = ft.gpus_per_node, ft.num_spines, ft.cores_per_plane
    if code in (0, 1):
        e = (i, f"nvsw{i // g}")
    elif code in (2, 3):
        e = (i, f"leaf{ft.leaf_of(i)}")
    elif code in (4, 5):
        e = (f"leaf{i}", "spines*")
    elif code in (6, 7):
        e = (f"pod{i}", "cores*")
    elif code in (8, 9):
        leaf, k = divmod(i, S)
        e = (f"leaf{leaf}", ft.spine_name(ft.pod_of_leaf(leaf), k))
    else:
        pk, m = divmod(i, C)
        pod, k = divmod(pk, S)
        e = (ft.spine_name(pod, k), f"core{k * C + m}")
    return e if code % 2 == 0 else (e[1], e[0])


def encode(ft, link) -> int | None:
    """The id of a named link (None for a name this tree does not have)."""
    u, v = link
    g, S, C = ft.gpus_per_node, ft.num_spines, ft.cores_per_plane
    if isinstance(u, int) or isinstance(v, int):
        gpu, sw, out = (u, v, True) if isinstance(u, int) else (v, u, False)
        code = 0 if sw.startswith("nvsw") else 2
        return int(_id(code + (0 if out else 1), np.int64(gpu)))
    if v == "spines*":
        return int(_id(4, np.int64(int(u[4:]))))
    if u == "spines*":
        return int(_id(5, np.int64(int(v[4:]))))
    if v == "cores*":
        return int(_id(6, np.int64(int(u[3:]))))
    if u == "cores*":
        return int(_id(7, np.int64(int(v[3:]))))
    for a, b, base in ((u, v, 8), (v, u, 9)):
        if a.startswith("leaf") and b.startswith("spine"):
            k = int(b.rpartition("_")[2] if "_" in b else b[5:])
            return int(_id(base, np.int64(int(a[4:]) * S + k)))
    for a, b, base in ((u, v, 10), (v, u, 11)):
        if a.startswith("spine") and b.startswith("core"):
            pod, _, k = a[5:].partition("_") if "_" in a else ("0", "", a[5:])
            m = int(b[4:]) - int(k) * C
            return int(_id(base, np.int64((int(pod) * S + int(k)) * C + m)))
    return None
