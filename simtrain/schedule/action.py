"""Pipeline actions as plain data (the PyTorch pipelining design: a schedule is data).

An `Action` is one unit of pipeline work: forward (F), backward (B: input gradient, and
weight gradient too unless the schedule splits it off) or weight gradient (W) of one
micro-batch through one *virtual* stage. Virtual stages are numbered 0..S-1 along the
model, S = pp * vp; which pipeline rank holds a virtual stage is the schedule's placement
(the usual "looped" placement puts stage s on rank s % pp, chunk s // pp).

The text form is `<stage><kind><microbatch>`, e.g. `2F0`, and parses back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KINDS = ("F", "B", "W")
_ACTION = re.compile(r"^(\d+)([FBW])(\d+)$")


@dataclass(frozen=True, slots=True, order=True)
class Action:
    stage: int  # virtual stage index along the model, 0..S-1
    kind: str  # "F", "B" or "W"
    microbatch: int

    def __repr__(self) -> str:
        return f"{self.stage}{self.kind}{self.microbatch}"

    __str__ = __repr__

    @classmethod
    def parse(cls, text: str) -> "Action":
        m = _ACTION.match(text.strip())
        if not m:
            raise ValueError(f"not an action: {text!r} (expected e.g. 2F0, 0B3, 1W2)")
        return cls(int(m.group(1)), m.group(2), int(m.group(3)))


def looped_placement(pp: int, vp: int) -> tuple[int, ...]:
    """Virtual stage s lives on rank s % pp (Megatron's interleaved placement)."""
    return tuple(s % pp for s in range(pp * vp))


@dataclass(frozen=True)
class Schedule:
    """A complete pipeline schedule: per-rank ordered action lists plus placement."""

    name: str
    pp: int
    vp: int
    microbatches: int
    actions: dict[int, tuple[Action, ...]]
    placement: tuple[int, ...] = field(default=())  # virtual stage -> rank

    def __post_init__(self) -> None:
        if not self.placement:
            object.__setattr__(self, "placement", looped_placement(self.pp, self.vp))

    @property
    def num_stages(self) -> int:
        return self.pp * self.vp

    @property
    def split_backward(self) -> bool:
        return any(a.kind == "W" for acts in self.actions.values() for a in acts)

    def rank_of(self, stage: int) -> int:
        return self.placement[stage]

    def chunk_of(self, stage: int) -> int:
        """Index of `stage` among the virtual stages its rank holds (0..vp-1)."""
        rank = self.placement[stage]
        return sum(1 for s in range(stage) if self.placement[s] == rank)

    def to_text(self) -> str:
        """One line per rank: `rank: 0F0 0F1 ...` (the format of files in schedules/)."""
        return "\n".join(
            f"{r}: " + " ".join(map(repr, self.actions[r])) for r in range(self.pp)
        ) + "\n"


def parse_schedule_text(text: str, name: str = "file") -> dict[int, list[Action]]:
    """Parse the text form written by `Schedule.to_text` (comments start with #)."""
    actions: dict[int, list[Action]] = {}
    seen: dict[int, int] = {}  # rank -> line it was given on
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, sep, rest = line.partition(":")
        if not sep or not head.strip().isdigit():
            raise ValueError(f"{name}:{lineno}: expected 'RANK: ACTION ACTION ...', got {raw!r}")
        rank = int(head)
        if rank in actions:  # a second line would silently replace the first
            raise ValueError(f"{name}:{lineno}: rank {rank} is listed a second time (first on line {seen[rank]}); "
                             "give each rank one line")
        seen[rank] = lineno
        try:
            actions[rank] = [Action.parse(tok) for tok in rest.split()]
        except ValueError as e:
            raise ValueError(f"{name}:{lineno}: {e}") from None
    return actions
