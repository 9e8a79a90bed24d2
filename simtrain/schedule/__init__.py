"""Schedule layer: pipeline schedules as pure data (per-rank action lists), never simpy.
`build(name, pp, vp, microbatches)` -> Schedule. May import scenario only; the workload
layer (memory: peak in-flight micro-batches) and everything above build on it.

Registered schedules and what they support (M = micro-batches per data-parallel replica):

    gpipe        vp = 1; any M
    1f1b         vp = 1; any M
    zb-h1        vp = 1; any M (splits the backward into B and W)
    interleaved  vp >= 1; M a multiple of pp when vp > 1 (vp = 1 is 1f1b)
    interleaved-ep-overlap  as interleaved (vp > 1 when pp > 1), one more warm-up forward per rank;
                 steady-state F and B as overlapped pairs (Megatron-Core's expert-parallel
                 all-to-all overlap; pp = vp = 1: F0, then F(k+1) & B(k), then the last B)
    bfs          vp >= 1; any M (vp = 1 is gpipe)
    llama3       vp >= 1; any M; schedule.n = N in [pp, M] with M % N = 0 or >= pp, or N = M
                 (default N = pp when pp divides M; vp = 1 is 1f1b)
    interleaved-zb  vp >= 1; M a multiple of max(1, M // pp) when vp > 1 (PyTorch's
                 ScheduleInterleavedZeroBubble, ZB1P over vp chunks; vp = 1 is zb-h1)
    zb-v         vp = 2 in a V (rank r: stages r, 2pp-1-r); any M
    dualpipe     vp = 2 (stage r and its mirror, two chains: 2x parameters); pp even,
                 M even and >= 2pp (DeepSeek-V3)
    dualpipe-v   vp = 2 in a V; M >= 2pp (DualPipe cut in half)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from simtrain.scenario.errors import SimtrainError
from simtrain.schedule import constraints
from simtrain.schedule.action import Action, Schedule, parse_text, v_placement
from simtrain.schedule.basic import gpipe, one_f_one_b
from simtrain.schedule.dualpipe import dualpipe, dualpipe_v
from simtrain.schedule.interleaved import interleaved, interleaved_ep_overlap, llama3, looped_bfs
from simtrain.schedule.validate import ScheduleError, evaluate, live_peak, peak_in_flight, validate
from simtrain.schedule.zero_bubble import interleaved_zb, zb_h1, zb_v

# per-rank lists; a tuple (F, B) is an overlapped pair (DualPipe's F&B)
Generator = Callable[..., dict[int, list]]


@dataclass(frozen=True)
class ScheduleKind:
    name: str
    generate: Generator
    interleaved: bool  # takes vp > 1
    description: str
    # returns an error message (one line) if (pp, vp, m, params) is not supported, else None
    constraint: Callable[..., str | None] = lambda pp, vp, m, **kw: None
    params: tuple[str, ...] = ()  # extra keyword parameters, scenario keys `schedule.<param>`
    vp: int | None = None  # chunks per rank the schedule always runs (zb-v, dualpipe: 2)
    placement: Callable[[int, int], tuple[int, ...]] | None = None  # (pp, vp) -> stage ranks
    chains: int = 1  # routes through the stages, each a copy of the model (dualpipe: 2)
    mixed: bool = False  # some backwards full, some split (dualpipe)


_single_chunk = constraints.single_chunk  # kept for callers of the old private helper

REGISTRY: dict[str, ScheduleKind] = {}


def _generate(kind: ScheduleKind, name: str, pp: int, vp: int, microbatches: int, params: dict,
              check_valid: bool = True) -> Schedule:
    lists = kind.generate(pp, microbatches, vp=vp, **params)
    actions: dict[int, tuple[Action, ...]] = {}
    overlapped = set()
    for r, steps in lists.items():
        flat: list[Action] = []
        for step in steps:
            if isinstance(step, tuple):  # an overlapped pair
                overlapped.add((r, len(flat)))
                flat.extend(step)
            else:
                flat.append(step)
        actions[r] = tuple(flat)
    placement = kind.placement(pp, vp) if kind.placement else ()
    sched = Schedule(name, pp, vp, microbatches, actions, placement, kind.chains, frozenset(overlapped), kind.mixed)
    if check_valid:
        validate(sched)
    return sched


def generate_unvalidated(name: str, pp: int, vp: int, microbatches: int, **params: object) -> Schedule:
    """Schedule `name` as `build` makes it, its constraints checked but the schedule not
    validated (sweeps validate only the ones they simulate: `validate`)."""
    params = {k: v for k, v in params.items() if v is not None}
    _kind(name)
    why = check(name, pp, vp, microbatches, **params)
    if why:
        raise SimtrainError(why)
    return _generate(REGISTRY[name], name, pp, vp, microbatches, params, check_valid=False)


@lru_cache(maxsize=256)
def _built(name: str, pp: int, vp: int, microbatches: int, params: tuple) -> Schedule:
    """Validated schedules by (name, pp, vp, M, params): generation is pure, and validating
    a large schedule costs more than simulating it in sweeps."""
    return _generate(REGISTRY[name], name, pp, vp, microbatches, dict(params))


def register(kind: ScheduleKind) -> None:
    REGISTRY[kind.name] = kind
    _built.cache_clear()


for _kind_ in (
    ScheduleKind("gpipe", gpipe, False, "all forwards, then all backwards (Huang et al. 2019)",
                 constraints.single_chunk("gpipe")),
    ScheduleKind("1f1b", one_f_one_b, False,
                 "one-forward-one-backward, PipeDream-Flush (Narayanan et al. 2021)",
                 constraints.single_chunk("1f1b")),
    ScheduleKind("interleaved", interleaved, True,
                 "interleaved 1F1B, depth-first over vp chunks (Narayanan et al. 2021; Megatron-LM)",
                 constraints.interleaved),
    ScheduleKind("interleaved-ep-overlap", interleaved_ep_overlap, True,
                 "interleaved 1F1B whose steady-state forward and backward run as overlapped pairs, "
                 "hiding expert all-to-alls (Megatron-Core --overlap-moe-expert-parallel-comm)",
                 constraints.interleaved_ep_overlap),
    ScheduleKind("bfs", looped_bfs, True,
                 "looped breadth-first: all micro-batches through a chunk before the next "
                 "(Lamy-Poirier 2023)", constraints.any_m),
    ScheduleKind("llama3", llama3, True,
                 "interleaved 1F1B with N contiguous micro-batches per chunk, any M "
                 "(Llama 3 paper §3.3.2)", constraints.llama3, ("n",)),
    ScheduleKind("zb-h1", zb_h1, False,
                 "zero-bubble ZB-H1: backward split into B and W, 1F1B's peak memory "
                 "(Qi et al. 2023)", constraints.single_chunk("zb-h1")),
    ScheduleKind("interleaved-zb", interleaved_zb, True,
                 "interleaved zero bubble, ZB1P over vp chunks (Qi et al. 2023; PyTorch's "
                 "ScheduleInterleavedZeroBubble)", constraints.interleaved_zb),
    ScheduleKind("zb-v", zb_v, True,
                 "zero-bubble ZB-V: two chunks per rank in a V, 1F1B's peak memory (Qi et al. 2024)",
                 constraints.zb_v, vp=2, placement=lambda pp, vp: v_placement(pp)),
    ScheduleKind("dualpipe", dualpipe, True,
                 "DualPipe: micro-batches from both ends, overlapped F&B pairs, 2x parameters "
                 "(DeepSeek-V3 §3.2.1)", constraints.dualpipe, vp=2,
                 placement=lambda pp, vp: v_placement(pp), chains=2, mixed=True),
    ScheduleKind("dualpipe-v", dualpipe_v, True,
                 "DualPipeV: DualPipe cut in half, two chunks per rank in a V (deepseek-ai/DualPipe)",
                 constraints.dualpipe_v, vp=2, placement=lambda pp, vp: v_placement(pp), mixed=True),
):
    register(_kind_)


def names() -> list[str]:
    return list(REGISTRY)


def check(name: str, pp: int, vp: int, microbatches: int, **params: object) -> str | None:
    """One-line reason why `name` cannot run (pp, vp, microbatches), or None.

    Parameters whose value is None are ignored (None means "the default").
    """
    params = {k: v for k, v in params.items() if v is not None}
    kind = _kind(name)
    if pp < 1:
        return f"parallel.pp = {pp}: pipeline stages must be at least 1; use 1 for no pipelining"
    if vp < 1:
        return f"parallel.vp = {vp}: model chunks per pipeline rank must be at least 1; use 1 for no interleaving"
    if microbatches < 1:
        return f"micro-batches per replica ({microbatches}) must be at least 1"
    unknown = sorted(set(params) - set(kind.params))
    if unknown:
        return (
            f"schedule.{unknown[0]}: schedule {name!r} takes no such parameter; "
            + (f"it takes {', '.join('schedule.' + p for p in kind.params)}" if kind.params else "remove it")
        )
    return kind.constraint(pp, vp, microbatches, **params)


def build(name: str, pp: int, vp: int, microbatches: int, **params: object) -> Schedule:
    """Generate and validate schedule `name`; a violated constraint raises one clear line.

    Parameters whose value is None are dropped (so `n=None` means "the default").
    """
    params = {k: v for k, v in params.items() if v is not None}
    _kind(name)  # unknown names fail here with the list of schedules
    why = check(name, pp, vp, microbatches, **params)
    if why:
        raise SimtrainError(why)
    return _built(name, pp, vp, microbatches, tuple(sorted(params.items())))


def from_text(text: str, pp: int, vp: int, microbatches: int, name: str = "file") -> Schedule:
    """Parse and validate a schedule written in `Schedule.to_text()` form."""
    try:
        parsed = parse_text(text, name)
    except ValueError as e:
        raise SimtrainError(f"schedule.file: {e}; fix the line or regenerate it with `simtrain schedules`") from None
    actions = parsed.actions
    extra = sorted(r for r in actions if r >= pp)
    if extra:
        raise SimtrainError(
            f"schedule.file: {name} has actions for rank {extra[0]} but parallel.pp = {pp}; "
            f"set parallel.pp = {max(actions) + 1} or drop those lines"
        )
    if not any(actions.values()):
        raise SimtrainError(f"schedule.file: {name} has no actions; write one line per rank, e.g. regenerate it with `simtrain schedules`")
    found = 1 + max(a.microbatch for acts in actions.values() for a in acts)
    if found != microbatches:
        raise SimtrainError(
            f"schedule.file: {name} schedules {found} micro-batches but the scenario has {microbatches} per replica "
            f"(global_batch / (dp * micro_batch)); write the file for {microbatches} or change training.global_batch"
        )
    sched = Schedule(name, pp, vp, microbatches, {r: tuple(actions.get(r, ())) for r in range(pp)},
                     parsed.placement, parsed.chains, parsed.overlapped, parsed.mixed)
    try:
        validate(sched)
    except ScheduleError as e:  # one line for the user; the grid is for `simtrain schedules`
        raise ScheduleError(f"schedule.file: {str(e).splitlines()[0]}; fix the file (`simtrain schedules` draws a valid one)") from None
    return sched


def load_schedule_file(path: str | Path, pp: int, vp: int, microbatches: int) -> Schedule:
    """Read `schedule.file` (text form, `# comments` allowed) and validate it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SimtrainError(f"schedule.file = {str(p)!r}: cannot read it ({e.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise SimtrainError(f"schedule.file = {str(p)!r}: not UTF-8 text; give a schedule text file (schedules/*.txt)") from None
    return from_text(text, pp, vp, microbatches, name=p.name)


def _kind(name: str) -> ScheduleKind:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SimtrainError(
            f"schedule.name = {name!r}: unknown schedule; use one of {', '.join(REGISTRY)}"
        ) from None


__all__ = [
    "Action", "Schedule", "ScheduleError", "ScheduleKind", "REGISTRY", "build", "check",
    "evaluate", "from_text", "generate_unvalidated", "live_peak", "load_schedule_file", "names", "peak_in_flight", "register",
    "validate",
]
