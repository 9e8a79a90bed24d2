"""Parallel layout: TP x CP x PP x DP mapped onto global ranks (= device ids).

Order, innermost first, `parallel.order` (Megatron-LM's `order` notation; default
"tp-cp-pp-dp", as Llama 3's Figure 5: TP stays inside an NVSwitch node, DP is outermost):
    rank = tp + TP * (cp + CP * (pp + PP * dp))
Megatron-Core's own default is "tp-cp-ep-dp-pp" (DP inside PP; "tp-cp-ep-pp-dp" with
--use-tp-pp-dp-mapping); "ep" is accepted and ignored: expert groups are carved from
the TP x CP x DP ranks of a pipeline stage, as below.
A process group of one dimension is the set of ranks that differ only in that coordinate.

Expert parallelism (mixture-of-experts models): the TP x CP x DP ranks of one pipeline
stage, numbered f = tp + TP * (cp + CP * dp), are regrouped for the experts as
    f = etp + ETP * (ep + EP * edp)        (Megatron-Core's expert rank order, ETP innermost)
An "ep" group holds the EP ranks that split one MoE layer's experts (they exchange tokens
by all-to-all); an "edp" group the EDP = TP*CP*DP / (ETP*EP) ranks that hold the same
experts (their gradients are reduced over it, their optimizer state sharded over it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from simtrain.scenario.config import Scenario
from simtrain.scenario.errors import SimtrainError, bad

DIMS = ("tp", "cp", "pp", "dp")


@dataclass(frozen=True)
class Coord:
    dp: int
    pp: int
    cp: int
    tp: int


DEFAULT_ORDER = "tp-cp-pp-dp"


def parse_order(text: str) -> tuple[str, ...]:
    """`parallel.order` -> the four dimensions, innermost first; one line if it is not a
    permutation of tp, cp, pp and dp (an "ep" among them is dropped)."""
    parts = [p.strip() for p in str(text).lower().split("-")]
    dims = tuple(p for p in parts if p != "ep")
    if sorted(dims) != sorted(DIMS) or parts.count("ep") > 1:
        raise bad("parallel.order", text, "must name tp, cp, pp and dp once each, innermost first, joined by '-'",
                  f'write e.g. "{DEFAULT_ORDER}" (the default) or "tp-cp-dp-pp" (Megatron-Core\'s default)')
    return dims


@dataclass(frozen=True)
class Layout:
    tp: int
    cp: int
    pp: int
    dp: int
    vp: int
    micro_batch: int
    global_batch: int
    order: tuple[str, ...] = DIMS  # innermost first

    def __post_init__(self) -> None:
        stride, strides = 1, {}
        for d in self.order:
            strides[d] = stride
            stride *= getattr(self, d)
        object.__setattr__(self, "_strides", tuple(strides[d] for d in DIMS))
        object.__setattr__(self, "_unpack", tuple((d, getattr(self, d)) for d in self.order))
    ep: int = 1
    etp: int = 1

    @property
    def edp(self) -> int:
        """Ranks holding the same experts: TP*CP*DP / (ETP*EP)."""
        return self.tp * self.cp * self.dp // (self.etp * self.ep)

    @property
    def world(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def microbatches(self) -> int:
        """Micro-batches per data-parallel replica per step."""
        return self.global_batch // (self.dp * self.micro_batch)

    def size(self, dim: str) -> int:
        return getattr(self, dim)

    def stride(self, dim: str) -> int:
        """Rank distance between neighbours along `dim` (tp, cp, pp or dp)."""
        return self._strides[DIMS.index(dim)]  # type: ignore[attr-defined]

    def rank(self, c: Coord) -> int:
        st, sc, sp, sd = self._strides  # type: ignore[attr-defined]
        return c.tp * st + c.cp * sc + c.pp * sp + c.dp * sd

    def coord(self, rank: int) -> Coord:
        out = {}
        for d, n in self._unpack:  # type: ignore[attr-defined]
            rank, out[d] = divmod(rank, n)
        return Coord(**out)

    def _flat(self, c: Coord) -> int:
        """Position of a rank among its pipeline stage's TP x CP x DP ranks."""
        return c.tp + self.tp * (c.cp + self.cp * c.dp)

    def _unflat(self, f: int, pp: int) -> int:
        tp, r = f % self.tp, f // self.tp
        return self.rank(Coord(r // self.cp, pp, r % self.cp, tp))

    def expert_coord(self, rank: int) -> tuple[int, int, int]:
        """(etp, ep, edp) of a rank in the experts' regrouping of its stage."""
        f = self._flat(self.coord(rank))
        return f % self.etp, (f // self.etp) % self.ep, f // (self.etp * self.ep)

    def group(self, dim: str, rank: int) -> tuple[int, ...]:
        """Ranks of the `dim` process group that contains `rank`, in coordinate order.

        `dim` = "dpcp" is the gradient-reduction group: CP ranks hold the same parameters as
        their DP peers, so gradients are reduced (and optimizer state sharded) over DP x CP.
        """
        c = self.coord(rank)
        if dim in ("ep", "edp"):
            et, e, ed = self.expert_coord(rank)
            if dim == "ep":
                return tuple(self._unflat(et + self.etp * (i + self.ep * ed), c.pp) for i in range(self.ep))
            return tuple(self._unflat(et + self.etp * (e + self.ep * i), c.pp) for i in range(self.edp))
        # rank is linear in the coordinates (strides from parallel.order): a group is arithmetic
        if dim == "dpcp":
            sd, sc = self.stride("dp"), self.stride("cp")
            base = rank - c.dp * sd - c.cp * sc
            return tuple(base + d * sd + k * sc for d in range(self.dp) for k in range(self.cp))
        step = self.stride(dim)
        base = rank - getattr(c, dim) * step
        return tuple(range(base, base + self.size(dim) * step, step))

    def groups(self, dim: str) -> Iterator[tuple[int, ...]]:
        """Every process group of dimension `dim` once."""
        seen: set[int] = set()
        for r in range(self.world):
            if r not in seen:
                g = self.group(dim, r)
                seen.update(g)
                yield g


# Sizes far past any real job, refused so that a typo cannot hang the simulator: every
# device of a topology is a graph node, and every micro-batch is an action per rank.
MAX_DEVICES = 1 << 20  # 1,048,576
MAX_MICROBATCHES = 65_536
MAX_SEQ_LEN = 1 << 24  # 16,777,216 tokens: past the longest published contexts (10M)


def make_layout(s: Scenario) -> Layout:
    p, t = s.parallel, s.training
    for dim in ("tp", "pp", "cp", "vp", "micro_batch"):
        v = getattr(p, dim)
        if v < 1:
            raise bad(f"parallel.{dim}", v, "must be at least 1", f"set parallel.{dim} to a positive whole number")
    m = s.model
    if m.num_attention_heads % p.tp:
        raise bad("parallel.tp", p.tp, f"does not divide the {m.num_attention_heads} attention heads",
                  f"use a tp that divides {m.num_attention_heads}, e.g. {_divisor_hint(m.num_attention_heads, p.tp)}")
    if m.num_key_value_heads % p.tp and p.tp % m.num_key_value_heads:
        raise bad("parallel.tp", p.tp, f"neither divides nor is a multiple of the {m.num_key_value_heads} key/value heads",
                  f"use a tp that divides {m.num_key_value_heads}")
    for dim in ("first_stage_layers", "last_stage_layers"):
        if getattr(p, dim) < -1:
            raise bad(f"parallel.{dim}", getattr(p, dim), "must be -1 (even split) or a layer count",
                      f"set parallel.{dim} = -1 or to the layers the end stage holds")
    inner = p.tp * p.cp * p.pp
    gpus = s.cluster.gpus
    if gpus < 0:
        raise bad("cluster.gpus", gpus, "must be positive", "give the number of GPUs, or 0 for tp*cp*pp*dp")
    if gpus > MAX_DEVICES or inner > MAX_DEVICES:
        raise bad("cluster.gpus", gpus or inner, f"is above simtrain's limit of {MAX_DEVICES:,} devices",
                  "simulate a smaller cluster (the symmetric engine is exact for identical replicas)")
    dp = p.dp
    if dp < 0:
        raise bad("parallel.dp", dp, "must be positive", "set parallel.dp, or omit it to derive it from cluster.gpus")
    if dp == 0:
        if gpus <= 0:
            dp = 1
        elif gpus % inner:
            raise bad("cluster.gpus", gpus, f"not divisible by tp*cp*pp = {inner}",
                      f"use a multiple of {inner} GPUs or change tp, cp, pp")
        else:
            dp = gpus // inner
    world = inner * dp
    if gpus and gpus != world:
        raise bad("cluster.gpus", gpus,
                  f"does not match tp*cp*pp*dp = {p.tp}*{p.cp}*{p.pp}*{dp} = {world}",
                  (f"set cluster.gpus = {world}, or parallel.dp = {gpus // inner}, or omit one of them" if gpus % inner == 0
                   else f"set cluster.gpus = {world}, or choose tp*cp*pp dividing {gpus}"))
    if world > MAX_DEVICES:
        raise bad("parallel.dp", dp, f"makes {world:,} devices, above simtrain's limit of {MAX_DEVICES:,}",
                  "simulate a smaller cluster")
    if t.global_batch < 0:
        raise bad("training.global_batch", t.global_batch, "must be positive",
                  "give sequences per step, or 0 for one micro-batch per replica")
    gb = t.global_batch or dp * p.micro_batch
    if gb // (dp * p.micro_batch) > MAX_MICROBATCHES:
        raise bad("training.global_batch", t.global_batch,
                  f"makes {gb // (dp * p.micro_batch):,} micro-batches per replica, above simtrain's limit of {MAX_MICROBATCHES:,}",
                  "raise parallel.micro_batch or lower the batch")
    if gb % (dp * p.micro_batch):
        mult = dp * p.micro_batch
        lo = max(mult, gb // mult * mult)
        raise bad("training.global_batch", t.global_batch,
                  f"not divisible by dp*micro_batch = {dp}*{p.micro_batch} = {mult}",
                  f"use {lo} or {lo + mult}")
    if t.seq_len < 1:
        raise bad("training.seq_len", t.seq_len, "must be positive", "set the sequence length in tokens, e.g. 8192")
    if t.seq_len > MAX_SEQ_LEN:
        raise bad("training.seq_len", t.seq_len, f"is above simtrain's limit of {MAX_SEQ_LEN:,} tokens",
                  "give the real sequence length in tokens, e.g. 8192")
    if not 0 <= t.document_length <= t.seq_len:
        raise bad("training.document_length", t.document_length, f"must be between 0 and seq_len = {t.seq_len}",
                  "give the tokens per packed document, or 0 for one document per sequence")
    if p.cp > 1 and t.seq_len % (2 * p.cp):
        raise bad("parallel.cp", p.cp, f"sequence length {t.seq_len} is not divisible by 2*cp (two chunks per CP rank)",
                  "use a cp that divides seq_len/2")
    _check_experts(s, p.tp * p.cp * dp)
    return Layout(p.tp, p.cp, p.pp, dp, p.vp, p.micro_batch, gb, parse_order(p.order), p.ep, p.etp)


def _check_experts(s: Scenario, stage_ranks: int) -> None:
    """EP and ETP against the model and the TP x CP x DP ranks of a stage (one line each)."""
    p, m = s.parallel, s.model
    if p.ep < 1:
        raise bad("parallel.ep", p.ep, "must be at least 1", "set parallel.ep to a positive whole number (1: no expert parallelism)")
    if p.ep > 1 and not m.num_experts:
        raise bad("parallel.ep", p.ep, f"model {m.name} has no experts", "set parallel.ep = 1 or use a mixture-of-experts model")
    if m.num_experts and m.num_experts % p.ep:
        raise bad("parallel.ep", p.ep, f"does not divide the {m.num_experts} experts",
                  f"use an ep that divides {m.num_experts}, e.g. {_divisor_hint(m.num_experts, p.ep)}")
    if p.etp not in (1, p.tp):
        raise bad("parallel.etp", p.etp, f"experts' tensor parallelism must be 1 or tp ({p.tp})", "set parallel.etp = 1")
    if stage_ranks % (p.etp * p.ep):
        raise bad("parallel.ep", p.ep, f"etp*ep = {p.etp * p.ep} does not divide the tp*cp*dp = {stage_ranks} ranks of a "
                  "pipeline stage", "use an ep that divides tp*cp*dp / etp")
    if p.ep_node_limit < 0:
        raise bad("parallel.ep_node_limit", p.ep_node_limit, "must be 0 (no limit) or a node count", "use e.g. 4")


def _divisor_hint(n: int, near: int) -> int:
    divs = [d for d in range(1, n + 1) if n % d == 0]
    return min(divs, key=lambda d: (abs(d - near), d))


def split_layers(num_layers: int, stages: int, first: int = -1, last: int = -1,
                 explicit: tuple[int, ...] = ()) -> list[int]:
    """Transformer layers per virtual stage, in model order (virtual stage v runs on
    pipeline rank v % pp in the interleaved schedules).

    - `explicit` (`parallel.stage_layers`): one count per virtual stage, checked: pp*vp
      entries that add up to the model's layers, none negative, and zero only on the first
      or last virtual stage (which still hold the embedding or the output layer).
    - `first`/`last` (`parallel.first_stage_layers`/`last_stage_layers`, -1 = not pinned)
      pin the end stages (Llama 3 put one layer fewer on the first and last stage:
      126 = 16*8 - 2), as Megatron-Core's --decoder-first/last-pipeline-num-layers do; the
      other stages share the rest.
    - The rest is split as evenly as possible: every stage gets floor(L/S) layers and,
      when S does not divide L, the S - L mod S stages that get one layer fewer are taken
      from the ends inward (first, last, second, second-to-last, ...), since the end stages
      also run the embedding and the output layer: 60 layers on 8 stages are
      [7, 7, 8, 8, 8, 8, 7, 7]; 126 layers on 128 stages (PP16 VP8) are 0 on the first and
      last and 1 elsewhere, Llama 3's layout. No middle stage is left empty.
    """
    if explicit:
        return _check_explicit(num_layers, stages, tuple(explicit), first, last)
    if stages == 1:
        for key, pinned in (("first_stage_layers", first), ("last_stage_layers", last)):
            if pinned >= 0 and pinned != num_layers:  # would be silently ignored
                raise bad(f"parallel.{key}", pinned, f"with a single pipeline stage (pp*vp = 1) that stage holds all "
                          f"{num_layers} layers", f"set parallel.{key} = -1, or use pp > 1")
        return [num_layers]
    fixed = [x for x in (first, last) if x >= 0]
    rest_layers = num_layers - sum(fixed)
    rest_stages = stages - len(fixed)
    if rest_stages == 0:
        if rest_layers != 0:
            raise SimtrainError(
                f"parallel.first_stage_layers/last_stage_layers = {first}/{last}: they must add up to the {num_layers} layers when there are only 2 stages; fix one of them"
            )
        return [first, last]
    if rest_layers < 0:
        raise bad("parallel.first_stage_layers", first,
                  f"with last_stage_layers = {last} the end stages hold more than the model's {num_layers} layers",
                  "lower first_stage_layers or last_stage_layers")
    middle = balanced(rest_layers, rest_stages)
    if ((0 in middle[1:-1]) or (fixed and 0 in middle)) and fixed and rest_stages <= num_layers:
        # the pinned end stages leave the middle ones too few layers: name the pin
        key, value = ("first_stage_layers", first) if first >= 0 else ("last_stage_layers", last)
        most = num_layers - rest_stages - (sum(fixed) - value)
        raise bad(f"parallel.{key}", value, f"leaves {rest_layers} layers for the other {rest_stages} virtual "
                  f"stage{'s' if rest_stages != 1 else ''}, each of which needs one", f"use at most {most}, or fewer pipeline stages")
    if (0 in middle[1:-1]) or (fixed and 0 in middle):
        raise bad("parallel.pp", f"{stages} virtual stages",
                  f"more virtual stages than the {num_layers} layers can fill"
                  + ("" if not fixed else f" with {first}/{last} on the first/last stage"),
                  "use fewer pipeline stages (pp) or virtual stages (vp)")
    return ([first] if first >= 0 else []) + middle + ([last] if last >= 0 else [])


def balanced(layers: int, stages: int) -> list[int]:
    """`layers` over `stages` as evenly as possible, the shortfall at the ends (see
    `split_layers`)."""
    each, extra = divmod(layers, stages)
    out = [each + 1] * stages
    short = stages - extra if extra else 0
    if not extra:
        return [each] * stages
    for i in range(short):  # first, last, second, second-to-last, ...
        out[i // 2 if i % 2 == 0 else stages - 1 - i // 2] = each
    return out


def _check_explicit(num_layers: int, stages: int, split: tuple[int, ...], first: int, last: int) -> list[int]:
    field = "parallel.stage_layers"
    if first >= 0 or last >= 0:
        raise bad(field, list(split), "given together with first_stage_layers/last_stage_layers",
                  "give the whole split in stage_layers and set the other two to -1")
    if len(split) != stages:
        raise bad(field, list(split), f"has {len(split)} entries for pp*vp = {stages} virtual stages",
                  f"give {stages} layer counts, one per virtual stage in model order")
    for i, n in enumerate(split):
        if n < 0 or (n == 0 and 0 < i < stages - 1):
            raise bad(f"{field}[{i}]", n, "a virtual stage must hold at least one layer"
                      + (" (only the first and last may hold none: they still run the embedding or output layer)" if n == 0 else ""),
                      "give every middle stage one layer or more")
    if sum(split) != num_layers:
        raise bad(field, list(split), f"adds up to {sum(split)} layers, not the model's {num_layers}",
                  f"make the entries sum to {num_layers}")
    return list(split)
