"""The explicit schedules in schedules/ (hand-written or worked from the papers' rules)
must be reproduced exactly by the generators, and load through `schedule.file`."""

from __future__ import annotations

from pathlib import Path

import pytest

import simtrain.schedule as S
from simtrain.schedule.action import parse_schedule_text

FILES = sorted((Path(__file__).resolve().parents[1] / "schedules").glob("*.txt"))


def header(text: str) -> dict[str, str]:
    """The `# pp=4 vp=2 microbatches=10 schedule=llama3 n=5` line of a schedule file."""
    for line in text.splitlines():
        if line.startswith("#") and "schedule=" in line:
            return dict(tok.split("=", 1) for tok in line[1:].split())
    raise AssertionError("no '# pp=.. vp=.. microbatches=.. schedule=..' header line")


def test_the_published_examples_are_present() -> None:
    names = {f.name for f in FILES}
    assert {"gpipe_pp4_m4.txt", "1f1b_pp4_m8.txt", "interleaved_pp4_vp2_m8.txt",
            "llama3_pp4_vp2_m10_n5.txt", "zb-h1_pp4_m8.txt"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_generator_reproduces_file(path: Path) -> None:
    text = path.read_text()
    meta = header(text)
    assert text.lstrip().startswith("#")  # header comment naming the source
    pp, vp, m = int(meta.pop("pp")), int(meta.pop("vp")), int(meta.pop("microbatches"))
    name = meta.pop("schedule")
    params = {k: int(v) for k, v in meta.items()}
    built = S.build(name, pp, vp, m, **params)
    assert {r: tuple(a) for r, a in parse_schedule_text(text).items()} == built.actions
    assert S.load_schedule_file(path, pp, vp, m).actions == built.actions


def test_llama3_figure6_shape() -> None:
    # Figure 6: rank 0 runs micro-batches 0-4 on stage 0, then 0-4 on stage 4, then 5...
    text = next(f for f in FILES if f.name.startswith("llama3")).read_text()
    rank0 = parse_schedule_text(text)[0]
    assert [repr(a) for a in rank0[:11]] == "0F0 0F1 0F2 0F3 0F4 4F0 4F1 4F2 4F3 4F4 0F5".split()
    # warm-up 2*(4-0-1) + (2-1)*5 = 11 forwards before the first backward, which is stage 4's
    assert rank0[11].kind == "F" and repr(rank0[12]) == "4B0"
