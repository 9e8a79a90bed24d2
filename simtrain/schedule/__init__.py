"""Pipeline schedules: pure data, never simpy. `build(name, pp, vp, microbatches)` -> Schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from simtrain.errors import SimtrainError
from simtrain.schedule.action import Action, Schedule, parse_schedule_text
from simtrain.schedule.basic import gpipe, one_f_one_b
from simtrain.schedule.validate import ScheduleError, evaluate, peak_in_flight, validate

Generator = Callable[..., dict[int, list[Action]]]


@dataclass(frozen=True)
class ScheduleKind:
    name: str
    generate: Generator
    interleaved: bool  # takes vp > 1
    description: str
    # returns an error message (one line) if (pp, vp, m, params) is not supported, else None
    constraint: Callable[..., str | None] = lambda pp, vp, m, **kw: None


def _single_chunk(name: str) -> Callable[..., str | None]:
    def check(pp: int, vp: int, m: int, **_: object) -> str | None:
        if vp != 1:
            return (
                f"schedule {name!r} runs one model chunk per pipeline rank, but parallel.vp = {vp}: "
                f"set parallel.vp = 1 or use schedule \"interleaved\""
            )
        return None

    return check


REGISTRY: dict[str, ScheduleKind] = {
    "gpipe": ScheduleKind("gpipe", gpipe, False, "all forwards, then all backwards (Huang et al. 2019)", _single_chunk("gpipe")),
    "1f1b": ScheduleKind("1f1b", one_f_one_b, False, "one-forward-one-backward, PipeDream-Flush (Narayanan et al. 2021)", _single_chunk("1f1b")),
}


def register(kind: ScheduleKind) -> None:
    REGISTRY[kind.name] = kind


def names() -> list[str]:
    return list(REGISTRY)


def check(name: str, pp: int, vp: int, microbatches: int, **params: object) -> str | None:
    """One-line reason why `name` cannot run (pp, vp, microbatches), or None."""
    kind = _kind(name)
    if microbatches < 1:
        return f"micro-batches per replica ({microbatches}) must be at least 1"
    return kind.constraint(pp, vp, microbatches, **params)


def build(name: str, pp: int, vp: int, microbatches: int, **params: object) -> Schedule:
    """Generate and validate schedule `name`; a violated constraint raises one clear line."""
    kind = _kind(name)
    why = check(name, pp, vp, microbatches, **params)
    if why:
        raise SimtrainError(why)
    actions = kind.generate(pp, microbatches, vp=vp, **params)
    sched = Schedule(name, pp, vp, microbatches, {r: tuple(a) for r, a in actions.items()})
    validate(sched)
    return sched


def from_text(text: str, pp: int, vp: int, microbatches: int, name: str = "file") -> Schedule:
    try:
        actions = parse_schedule_text(text, name)
    except ValueError as e:
        raise SimtrainError(f"schedule.file: {e}; fix the line or regenerate it with `simtrain schedules`") from None
    sched = Schedule(name, pp, vp, microbatches, {r: tuple(actions.get(r, ())) for r in range(pp)})
    validate(sched)
    return sched


def _kind(name: str) -> ScheduleKind:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SimtrainError(
            f"schedule.name = {name!r}: unknown schedule; use one of {', '.join(REGISTRY)}"
        ) from None


__all__ = [
    "Action", "Schedule", "ScheduleError", "ScheduleKind", "REGISTRY", "build", "check",
    "evaluate", "from_text", "names", "peak_in_flight", "register", "validate",
]
