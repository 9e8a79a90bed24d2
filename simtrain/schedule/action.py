"""Pipeline actions as plain data (the PyTorch pipelining design: a schedule is data).

An `Action` is one unit of pipeline work: forward (F), backward (B: input gradient, and
weight gradient too unless the schedule splits it off) or weight gradient (W) of one
micro-batch through one *virtual* stage. Virtual stages are numbered 0..S-1 along the
model, S = pp * vp; which pipeline rank holds a virtual stage is the schedule's placement
(the usual "looped" placement puts stage s on rank s % pp, chunk s // pp).

The text form is `<stage><kind><microbatch>`, e.g. `2F0`, and parses back.

Two generalizations serve the schedules built for mixture-of-experts training:
- *chains* (DualPipe, DeepSeek-V3 §3.2.1): the S virtual stages form `chains` consecutive
  routes of S / chains stages each, every route a full copy of the model; micro-batch mb
  travels route mb // (M / chains) only. With one chain (every other schedule) each
  micro-batch visits every stage.
- *overlapped pairs* (DualPipe's "F&B"): two consecutive actions of a rank that run
  together, so that the all-to-all of one hides behind the compute of the other. The
  text form joins them with `&`: `0F5&7B1`.
- *mixed backward* (DualPipe): only some backwards are split; a B whose (stage,
  micro-batch) has no W is a full backward (input and weight gradients, sent on after
  both), as in every schedule without W.
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


def v_placement(pp: int) -> tuple[int, ...]:
    """Two chunks per rank in a V (ZB-V, DualPipe): stage s < pp on rank s, stage s >= pp
    on rank 2pp - 1 - s, so the model's middle (pp-1, pp) and ends (0, 2pp-1) share a rank."""
    return tuple(range(pp)) + tuple(reversed(range(pp)))


@dataclass(frozen=True)
class Schedule:
    """A complete pipeline schedule: per-rank ordered action lists plus placement."""

    name: str
    pp: int
    vp: int
    microbatches: int
    actions: dict[int, tuple[Action, ...]]
    placement: tuple[int, ...] = field(default=())  # virtual stage -> rank
    chains: int = 1  # routes through the stages, each a copy of the model (DualPipe: 2)
    # (rank, i): action i of that rank runs overlapped with action i + 1 (DualPipe's F&B)
    overlapped: frozenset[tuple[int, int]] = frozenset()
    mixed: bool = False  # some backwards full, some split into B and W (DualPipe)

    def __post_init__(self) -> None:
        if not self.placement:
            object.__setattr__(self, "placement", looped_placement(self.pp, self.vp))
        w = frozenset((a.stage, a.microbatch) for acts in self.actions.values() for a in acts if a.kind == "W")
        object.__setattr__(self, "_w", w)
        object.__setattr__(self, "_chain_length", self.pp * self.vp // max(1, self.chains))

    def has_w(self, stage: int, microbatch: int) -> bool:
        """Is the backward of (stage, micro-batch) split, its weight gradient a W of its own?"""
        return (stage, microbatch) in self._w  # type: ignore[attr-defined]

    def releases(self, a: Action) -> bool:
        """Does `a` end its (stage, micro-batch)'s backward: a W, or a B with no W to come?"""
        return a.kind == "W" or (a.kind == "B" and not self.has_w(a.stage, a.microbatch))

    @property
    def num_stages(self) -> int:
        return self.pp * self.vp

    @property
    def chain_length(self) -> int:
        """Virtual stages along one route (the whole model): S / chains."""
        return self._chain_length  # type: ignore[attr-defined]  (set once: is_first and is_last ask per action)

    @property
    def stage_microbatches(self) -> int:
        """Micro-batches that pass through each virtual stage: M / chains."""
        return self.microbatches // max(1, self.chains)

    def is_first(self, stage: int) -> bool:
        """Does `stage` start its route (it holds the embedding; its F waits for nothing)?"""
        return stage % self.chain_length == 0

    def is_last(self, stage: int) -> bool:
        """Does `stage` end its route (it holds the output layer and the loss)?"""
        return stage % self.chain_length == self.chain_length - 1

    def chain_of(self, microbatch: int) -> int:
        return microbatch // max(1, self.stage_microbatches) if self.chains > 1 else 0

    def on_route(self, stage: int, microbatch: int) -> bool:
        return self.chains == 1 or stage // self.chain_length == self.chain_of(microbatch)

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
        """One line per rank: `rank: 0F0 0F1 ...` (the format of files in schedules/), after
        `placement:` and `chains:` lines when they differ from the defaults."""
        head = []
        if self.placement != looped_placement(self.pp, self.vp):
            head.append("placement: " + " ".join(map(str, self.placement)))
        if self.chains != 1:
            head.append(f"chains: {self.chains}")
        if self.mixed:
            head.append("backward: mixed")
        lines = []
        for r in range(self.pp):
            toks: list[str] = []
            for i, a in enumerate(self.actions[r]):
                if (r, i - 1) in self.overlapped:
                    toks[-1] += f"&{a!r}"
                else:
                    toks.append(repr(a))
            lines.append(f"{r}: " + " ".join(toks))
        return "\n".join(head + lines) + "\n"


@dataclass(frozen=True)
class ParsedText:
    """What a schedule text holds: per-rank actions and the optional shape lines."""

    actions: dict[int, list[Action]]
    placement: tuple[int, ...] = ()
    chains: int = 1
    overlapped: frozenset[tuple[int, int]] = frozenset()
    mixed: bool = False


def parse_text(text: str, name: str = "file") -> ParsedText:
    """Parse the text form written by `Schedule.to_text` (comments start with #)."""
    actions: dict[int, list[Action]] = {}
    seen: dict[int, int] = {}  # rank -> line it was given on
    placement: tuple[int, ...] = ()
    chains = 1
    mixed = False
    overlapped: set[tuple[int, int]] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, sep, rest = line.partition(":")
        key = head.strip()
        if sep and key == "backward":
            if rest.strip() != "mixed":
                raise ValueError(f"{name}:{lineno}: expected 'backward: mixed', got {raw!r}")
            mixed = True
            continue
        if sep and key in ("placement", "chains"):
            nums = rest.split()
            if not nums or not all(n.isdigit() for n in nums) or (key == "chains" and len(nums) != 1):
                raise ValueError(f"{name}:{lineno}: expected '{key}: ' and whole numbers, got {raw!r}")
            if key == "placement":
                placement = tuple(int(n) for n in nums)
            else:
                chains = int(nums[0])
            continue
        if not sep or not key.isdigit():
            raise ValueError(f"{name}:{lineno}: expected 'RANK: ACTION ACTION ...', got {raw!r}")
        rank, acts = int(key), []
        if rank in actions:  # a second line would silently replace the first
            raise ValueError(f"{name}:{lineno}: rank {rank} is listed a second time (first on line {seen[rank]}); "
                             "give each rank one line")
        seen[rank] = lineno
        try:
            for tok in rest.split():
                parts = tok.split("&")
                if len(parts) > 2:
                    raise ValueError(f"{tok!r} overlaps more than two actions (write A&B)")
                if len(parts) == 2:
                    overlapped.add((rank, len(acts)))
                acts += [Action.parse(part) for part in parts]
        except ValueError as e:
            raise ValueError(f"{name}:{lineno}: {e}") from None
        actions[rank] = acts
    return ParsedText(actions, placement, chains, frozenset(overlapped), mixed)


def parse_schedule_text(text: str, name: str = "file") -> dict[int, list[Action]]:
    """The per-rank actions of a schedule text (`parse_text` also returns its shape)."""
    return parse_text(text, name).actions
