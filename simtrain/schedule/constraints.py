"""Which (pp, vp, micro-batches, params) each schedule supports, as one-line reasons.

Every function returns None when the combination is supported, else ONE line that names
the constraint and the nearest valid choices, e.g.
    interleaved needs micro-batches per replica (30) to be a multiple of pipeline
    stages (16): use 16 or 32, or schedule "llama3"
(printed on one line). `M` is micro-batches per data-parallel replica.
"""

from __future__ import annotations

from typing import Callable

Constraint = Callable[..., "str | None"]


def _either(values: list[int]) -> str:
    return " or ".join(str(v) for v in values)


def nearest(valid: list[int], wanted: int) -> list[int]:
    """The closest valid value below `wanted` and the closest above (one or two values)."""
    below = [v for v in valid if v < wanted]
    above = [v for v in valid if v > wanted]
    return ([max(below)] if below else []) + ([min(above)] if above else [])


def single_chunk(name: str) -> Constraint:
    """gpipe, 1f1b, zb-h1: one model chunk per rank (vp = 1)."""

    def check(pp: int, vp: int, m: int, **_: object) -> str | None:
        if vp != 1:
            return (
                f"schedule {name!r} runs one model chunk per pipeline rank, but parallel.vp = {vp}: "
                f"set parallel.vp = 1 or use schedule \"interleaved\""
            )
        return None

    return check


def interleaved(pp: int, vp: int, m: int, **_: object) -> str | None:
    """Megatron-LM's interleaved 1F1B: M a multiple of pp when vp > 1.

    Megatron-LM raises "number of microbatches ... is not divisible by pipeline-parallel
    size when using interleaved schedule"; with vp = 1 this is plain 1F1B and any M runs.
    """
    if vp > 1 and m % pp:
        lower, upper = (m // pp) * pp, (m // pp + 1) * pp  # 30, pp 16 -> 16, 32
        choices = [v for v in (lower, upper) if v > 0]
        return (
            f"interleaved needs micro-batches per replica ({m}) to be a multiple of pipeline "
            f"stages ({pp}): use {_either(choices)}, or schedule \"llama3\""
        )
    return None


def interleaved_ep_overlap(pp: int, vp: int, m: int, **_: object) -> str | None:
    """Megatron-Core's combined 1F1B: interleaved's rule, and virtual stages whenever there is
    a pipeline (TransformerConfig: "If enabling EP A2A overlap, virtual_pipeline_model_
    parallel_size must be specified when pipeline_model_parallel_size > 1")."""
    if pp > 1 and vp == 1:
        return (
            f"schedule \"interleaved-ep-overlap\" needs virtual stages with a pipeline (Megatron-Core's "
            f"expert-parallel overlap), but parallel.pp = {pp} and parallel.vp = 1: set parallel.vp > 1, or "
            f"parallel.pp = 1"
        )
    return interleaved(pp, vp, m)


def llama3_n_ok(pp: int, m: int, n: int) -> bool:
    """Can the flexible schedule run with N = n without deadlock?

    Megatron-LM's rule for `microbatch_group_size_per_vp_stage` (PP <= N <= M, and the last
    group M % N is 0 or at least PP), plus N = M (one group, PyTorch's case for M < PP).
    Sufficient: checked against the deadlock detector for pp <= 8, vp <= 4, M <= 24 (some
    N < PP also run, with stalls; Megatron-LM rejects them too). With vp = 1 N is unused.
    """
    if not 1 <= n <= m:
        return False
    if n == m:
        return True
    last = m % n  # size of the final, short group (0: all groups full)
    return n >= pp and (last == 0 or last >= pp)


def llama3_valid_ns(pp: int, m: int, vp: int = 2) -> list[int]:
    """Every N the schedule accepts (vp = 1: any 1..M, N is unused)."""
    return [n for n in range(1, m + 1) if vp == 1 or llama3_n_ok(pp, m, n)]


def llama3_default_n(pp: int, m: int) -> int:
    """PP when it is valid (PP divides M); else the smallest valid N above PP, else M.

    PP = 4, M = 10 gives N = 5, the example of the Llama 3 paper's Figure 6.
    """
    return next(n for n in range(min(pp, m), m + 1) if llama3_n_ok(pp, m, n))


def llama3(pp: int, vp: int, m: int, n: int | None = None, **_: object) -> str | None:
    """Llama 3's flexible interleaved 1F1B: any M; schedule.n constrained as above."""
    if n is None:
        return None
    if not isinstance(n, int) or isinstance(n, bool):
        return f"schedule.n = {n!r}: must be a whole number of micro-batches; use e.g. {llama3_default_n(pp, m)}"
    if vp == 1 and 1 <= n <= m:
        return None  # nothing to interleave: the schedule is 1F1B and N is unused
    if llama3_n_ok(pp, m, n):
        return None
    fix = f"use schedule.n = {_either(nearest(llama3_valid_ns(pp, m, vp), n))}"
    if not 1 <= n <= m:
        return f"llama3 needs schedule.n ({n}) between 1 and micro-batches per replica ({m}): {fix}"
    if n < pp:
        return (
            f"llama3 needs schedule.n ({n}) to be at least pipeline stages ({pp}) or equal to "
            f"micro-batches per replica ({m}): {fix}"
        )
    return (
        f"llama3 needs the last group of micro-batches ({m} % schedule.n {n} = {m % n}) to be 0 or "
        f"at least pipeline stages ({pp}): {fix}"
    )


def any_m(pp: int, vp: int, m: int, **_: object) -> str | None:
    """bfs: every M runs (M < pp only adds stalls)."""
    return None


def two_chunks(name: str, what: str) -> Constraint:
    """zb-v, dualpipe, dualpipe-v: exactly two model chunks per rank (vp = 2)."""

    def check(pp: int, vp: int, m: int, **_: object) -> str | None:
        if vp != 2:
            return (f"schedule {name!r} runs exactly two model chunks per pipeline rank ({what}), but "
                    f"parallel.vp = {vp}: set parallel.vp = 2")
        return None

    return check


zb_v = two_chunks("zb-v", "a V: stages r and 2pp-1-r")


def interleaved_zb(pp: int, vp: int, m: int, **_: object) -> str | None:
    """PyTorch's ScheduleInterleavedZeroBubble: rounds of N = M // max(1, M // pp)
    micro-batches, so M must be a multiple of the round count max(1, M // pp) ("Zero
    bubble requires the number of microbatches to be a multiple of the number of rounds").
    With vp = 1 it is ZB-H1 and any M runs."""
    rounds = max(1, m // pp)
    if vp > 1 and m % rounds:
        ok = [k for k in range(max(1, m - 2 * pp), m + 2 * pp + 1) if k % max(1, k // pp) == 0]
        return (f"interleaved-zb needs micro-batches per replica ({m}) to be a multiple of its rounds "
                f"(max(1, M // pp) = {rounds}), as PyTorch's ScheduleInterleavedZeroBubble does: "
                f"use {_either(nearest(ok, m))}")
    return None


def dualpipe(pp: int, vp: int, m: int, **_: object) -> str | None:
    """DeepSeek's DualPipe: two chunks per rank, an even pp, an even M of at least 2pp
    (`assert num_ranks % 2 == 0`, `num_chunks % 2 == 0 and num_chunks >= num_ranks * 2`)."""
    why = two_chunks("dualpipe", "stage r and its mirror pp-1-r")(pp, vp, m)
    if why:
        return why
    if pp % 2:
        return (f"dualpipe feeds the pipeline from both ends and needs an even parallel.pp, not {pp}: "
                f"use {_either([v for v in (pp - 1, pp + 1) if v > 0])}")
    if m % 2 or m < 2 * pp:
        lo = max(2 * pp, m + m % 2)
        ok = sorted({lo} | ({m - 1} if m % 2 and m - 1 >= 2 * pp else set()))
        return (f"dualpipe needs micro-batches per replica ({m}) to be even and at least twice the "
                f"pipeline stages (2 x {pp} = {2 * pp}): use {_either(ok)}")
    return None


def dualpipe_v(pp: int, vp: int, m: int, **_: object) -> str | None:
    """DualPipeV: two chunks per rank in a V, M of at least 2pp (`num_chunks >= num_ranks * 2`)."""
    why = two_chunks("dualpipe-v", "a V: stages r and 2pp-1-r")(pp, vp, m)
    if why:
        return why
    if m < 2 * pp:
        return (f"dualpipe-v needs micro-batches per replica ({m}) to be at least twice the pipeline "
                f"stages (2 x {pp} = {2 * pp}): use {2 * pp}")
    return None
