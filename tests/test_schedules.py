"""Schedule generators, constraints and the validator, checked against truths that do not
come from the code under test: closed-form bubbles (Huang et al. 2019; Narayanan et al.
2021; Qi et al. 2023), hand-worked timelines, and the constraint rules as documented."""

from __future__ import annotations

import itertools

import pytest

from simtrain.scenario.errors import SimtrainError
import simtrain.schedule as S
from simtrain.schedule.action import Action, Schedule, parse_schedule_text
from simtrain.schedule.interleaved import flexible_interleaved
from simtrain.schedule.validate import ScheduleError, evaluate, peak_in_flight, validate

ALL = ["gpipe", "1f1b", "interleaved", "interleaved-ep-overlap", "bfs", "llama3", "zb-h1"]
SINGLE_CHUNK = {"gpipe", "1f1b", "zb-h1"}
MS = [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16]  # includes values not divisible by p


def fb_cost(v: int = 1):
    """F = 1, B = 2 per micro-batch, split evenly over v chunks."""
    return lambda a: {"F": 1.0, "B": 2.0}[a.kind] / v


def unit_cost(a: Action) -> float:
    return 1.0


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("p,m", list(itertools.product(range(1, 9), [1, 2, 3, 5, 8, 13, 16])))
@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_gpipe_and_1f1b_bubble_closed_form(name: str, p: int, m: int) -> None:
    ev = evaluate(S.build(name, p, 1, m), fb_cost())
    assert ev.bubble_fraction == pytest.approx((p - 1) / (m + p - 1), abs=1e-9)
    assert ev.makespan == pytest.approx((m + p - 1) * 3, abs=1e-9)


@pytest.mark.parametrize("p,v,k", list(itertools.product(range(1, 9), range(2, 5), [1, 2, 3])))
def test_interleaved_bubble_closed_form(p: int, v: int, k: int) -> None:
    m = k * p  # Narayanan et al. 2021 §2.2.2: (p-1)/(v*m + p-1) when p divides m
    ev = evaluate(S.build("interleaved", p, v, m), fb_cost(v))
    assert ev.bubble_fraction == pytest.approx((p - 1) / (v * m + p - 1), abs=1e-9)


@pytest.mark.parametrize("p,v", list(itertools.product(range(1, 9), range(2, 5))))
def test_bfs_bubble_closed_form_for_any_m_at_least_p(p: int, v: int) -> None:
    for m in range(p, 2 * p + 2):  # breadth-first needs no divisibility
        ev = evaluate(S.build("bfs", p, v, m), fb_cost(v))
        assert ev.bubble_fraction == pytest.approx((p - 1) / (v * m + p - 1), abs=1e-9)


@pytest.mark.parametrize("p,m", list(itertools.product(range(1, 9), [8, 9, 13, 16])))
def test_zb_h1_bubble_closed_form(p: int, m: int) -> None:
    # Qi et al. 2023 §3.1: idle (p-1)(T_F + T_B - T_W) per rank; T = 1 each, m >= p
    ev = evaluate(S.build("zb-h1", p, 1, m), unit_cost)
    assert ev.makespan == pytest.approx(3 * m + (p - 1), abs=1e-9)
    assert ev.bubble_fraction == pytest.approx((p - 1) / (3 * m + p - 1), abs=1e-9)


@pytest.mark.parametrize("p,m", list(itertools.product(range(2, 9), [1, 2, 5, 8, 16])))
def test_zb_h1_beats_1f1b_with_the_same_peak(p: int, m: int) -> None:
    zb, ofob = S.build("zb-h1", p, 1, m), S.build("1f1b", p, 1, m)
    zb_bubble = evaluate(zb, unit_cost).bubble_fraction  # B = W = 1
    ofob_bubble = evaluate(ofob, fb_cost()).bubble_fraction  # B = 2: same work
    assert zb_bubble < ofob_bubble
    zb_peak, ofob_peak = peak_in_flight(zb), peak_in_flight(ofob)  # zb: F..W live
    assert max(zb_peak.values()) == max(ofob_peak.values()) == min(p, m)


def test_hand_worked_1f1b_pp2_m2() -> None:
    # rank 0: F0 [0,1] F1 [1,2]            B0 [4,6]        B1 [7,9]
    # rank 1:      F0 [1,2] B0 [2,4] F1 [4,5] B1 [5,7]
    ev = evaluate(S.build("1f1b", 2, 1, 2), fb_cost())
    assert ev.makespan == 9.0
    assert ev.end[Action(0, "B", 0)] == 6.0 and ev.start[Action(0, "B", 1)] == 7.0
    assert ev.bubble_fraction == pytest.approx(1 - 12 / 18)


def test_hand_worked_zb_h1_pp2_m2() -> None:
    # rank 0 (holds no W): F0 F1 B0 W0 B1 W1; rank 1 (holds one W): F0 B0 F1 B1 W0 W1
    sched = S.build("zb-h1", 2, 1, 2)
    assert sched.to_text() == "0: 0F0 0F1 0B0 0W0 0B1 0W1\n1: 1F0 1B0 1F1 1B1 1W0 1W1\n"
    # r1: F0[1,2] B0[2,3] F1[3,4] B1[4,5] W0[5,6] W1[6,7]; r0: B0[3,4] W0[4,5] B1[5,6] W1[6,7]
    assert evaluate(sched, unit_cost).makespan == 7.0


# ---------------------------------------------------------------- peak in flight


@pytest.mark.parametrize("p,m", list(itertools.product(range(1, 9), [1, 2, 3, 7, 8, 16])))
def test_peak_in_flight_1f1b_and_gpipe(p: int, m: int) -> None:
    assert peak_in_flight(S.build("1f1b", p, 1, m)) == {s: min(p - s, m) for s in range(p)}
    assert peak_in_flight(S.build("gpipe", p, 1, m)) == {s: m for s in range(p)}


@pytest.mark.parametrize("p,v", list(itertools.product(range(2, 7), range(2, 4))))
def test_interleaved_peak_is_megatron_warmup_plus_one(p: int, v: int) -> None:
    # rank 0 holds its 2(p-1) + (v-1)p warm-up chunk activations plus one: per chunk 1/v,
    # i.e. p + (p-1)/v whole micro-batches (Narayanan et al. 2021 §2.2.2: "more memory")
    m = 4 * p
    peak = peak_in_flight(S.build("interleaved", p, v, m))
    assert peak[0] == 2 * (p - 1) + (v - 1) * p + 1
    assert peak[0] / v == pytest.approx(p + (p - 1) / v)


# ---------------------------------------------------------------- equivalences


@pytest.mark.parametrize("p,v,k", list(itertools.product(range(1, 7), range(1, 4), [1, 2, 3])))
def test_llama3_with_n_equal_pp_is_interleaved(p: int, v: int, k: int) -> None:
    m = k * p
    assert S.build("llama3", p, v, m, n=p).actions == S.build("interleaved", p, v, m).actions
    assert S.build("llama3", p, v, m).actions == S.build("interleaved", p, v, m).actions  # default


@pytest.mark.parametrize("p,v,m", list(itertools.product(range(1, 7), range(2, 4), [3, 5, 8])))
def test_llama3_with_n_equal_m_forwards_breadth_first(p: int, v: int, m: int) -> None:
    ll, bfs = S.build("llama3", p, v, m, n=m), S.build("bfs", p, v, m)
    for r in range(p):
        assert [a for a in ll.actions[r] if a.kind == "F"] == [a for a in bfs.actions[r] if a.kind == "F"]


@pytest.mark.parametrize("p,m", list(itertools.product(range(1, 6), [1, 3, 4, 9])))
def test_vp1_degenerates(p: int, m: int) -> None:
    ofob = S.build("1f1b", p, 1, m).actions
    assert S.build("interleaved", p, 1, m).actions == ofob
    assert S.build("llama3", p, 1, m).actions == ofob
    assert S.build("bfs", p, 1, m).actions == S.build("gpipe", p, 1, m).actions


# ---------------------------------------------------------------- every schedule, whole grid


def _documented_ok(name: str, p: int, v: int, m: int, n: int | None = None) -> bool:
    """The constraints as the package docstring states them, re-derived here."""
    if name in SINGLE_CHUNK:
        return v == 1
    if name == "interleaved-ep-overlap":  # Megatron-Core: virtual stages whenever pp > 1
        return (p == 1 or v > 1) and (v == 1 or m % p == 0)
    if name == "interleaved":
        return v == 1 or m % p == 0
    if name == "llama3" and n is not None:
        if not 1 <= n <= m:
            return False
        return v == 1 or n == m or (n >= p and (m % n == 0 or m % n >= p))
    return True


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("p", range(1, 9))
def test_grid_every_schedule_valid_exactly_where_documented(name: str, p: int) -> None:
    for v, m in itertools.product(range(1, 5), MS):
        ok = _documented_ok(name, p, v, m)
        assert (S.check(name, p, v, m) is None) == ok, (name, p, v, m)
        if not ok:
            with pytest.raises(SimtrainError) as e:
                S.build(name, p, v, m)
            assert "\n" not in str(e.value)
            continue
        sched = S.build(name, p, v, m)  # runs check_structure + deadlock detection
        validate(sched)
        for r, acts in sched.actions.items():
            for a in acts:
                assert sched.placement[a.stage] == r
        kinds = {"F", "B", "W"} if name == "zb-h1" else {"F", "B"}
        total = p * v * m * len(kinds)
        assert sum(len(a) for a in sched.actions.values()) == total


@pytest.mark.parametrize("p,v", list(itertools.product(range(1, 7), range(1, 4))))
def test_llama3_n_rule_exactly(p: int, v: int) -> None:
    for m in [1, 3, 5, 7, 10, 12]:
        for n in range(0, m + 3):
            ok = _documented_ok("llama3", p, v, m, n)
            assert (S.check("llama3", p, v, m, n=n) is None) == ok, (p, v, m, n)
            if ok:
                validate(S.build("llama3", p, v, m, n=n))
            else:
                with pytest.raises(SimtrainError, match=r"schedule\.n"):
                    S.build("llama3", p, v, m, n=n)


def test_llama3_n_rule_is_real_the_order_deadlocks_outside_it() -> None:
    # pp=4, vp=3, M=5, N=4: last group has 1 < pp micro-batches -> the order deadlocks
    acts = flexible_interleaved(4, 5, 3, 4)
    with pytest.raises(ScheduleError, match="deadlock"):
        validate(Schedule("x", 4, 3, 5, {r: tuple(a) for r, a in acts.items()}))


def test_constraint_messages() -> None:
    assert S.check("interleaved", 16, 2, 30) == (
        'interleaved needs micro-batches per replica (30) to be a multiple of pipeline stages (16): '
        'use 16 or 32, or schedule "llama3"'
    )
    assert S.check("interleaved", 16, 2, 5).endswith('use 16, or schedule "llama3"')
    assert S.check("llama3", 4, 2, 10, n=4) == (
        "llama3 needs the last group of micro-batches (10 % schedule.n 4 = 2) to be 0 or "
        "at least pipeline stages (4): use schedule.n = 5"
    )
    assert S.check("llama3", 4, 2, 10, n=3).endswith("use schedule.n = 5")
    assert S.check("llama3", 4, 2, 10, n=11).endswith("use schedule.n = 10")
    assert "parallel.vp = 2" in S.check("zb-h1", 4, 2, 8)
    assert "schedule.n" in S.check("bfs", 4, 2, 8, n=3)
    assert S.check("1f1b", 4, 0, 8).startswith("parallel.vp = 0")
    with pytest.raises(SimtrainError, match="unknown schedule"):
        S.check("nope", 4, 1, 8)


def test_llama3_default_n_is_the_papers_example() -> None:
    # Llama 3 Figure 6: PP=4, M=10 -> N=5; interleaved's suggestion "llama3" always runs
    assert S.build("llama3", 4, 2, 10).microbatches == 10
    from simtrain.schedule.constraints import llama3_default_n

    assert llama3_default_n(4, 10) == 5 and llama3_default_n(4, 8) == 4
    assert llama3_default_n(16, 30) == 30 and llama3_default_n(4, 3) == 3


# ---------------------------------------------------------------- text forms and files


@pytest.mark.parametrize("name", ALL)
def test_text_round_trip(name: str) -> None:
    p, v, m = 4, (1 if name in SINGLE_CHUNK else 2), 8
    sched = S.build(name, p, v, m)
    text = sched.to_text()
    parsed = parse_schedule_text(text)
    assert {r: tuple(a) for r, a in parsed.items()} == sched.actions
    assert S.from_text(text, p, v, m).actions == sched.actions
    for acts in sched.actions.values():
        for a in acts:
            assert Action.parse(repr(a)) == a


def test_load_schedule_file_and_errors(tmp_path) -> None:
    f = tmp_path / "s.txt"
    f.write_text("# comment\n0: 0F0 0B1 0F1 0B0  # trailing comment\n")
    with pytest.raises(ScheduleError, match="0B1 runs before its forward 0F1"):
        S.load_schedule_file(f, 1, 1, 2)
    f.write_text("0: 0F0 0B0\n")
    assert S.load_schedule_file(f, 1, 1, 1).actions == {0: (Action(0, "F", 0), Action(0, "B", 0))}
    f.write_text("0: 0F0 0X0\n")
    with pytest.raises(SimtrainError, match=r"schedule.file: s.txt:1: not an action"):
        S.load_schedule_file(f, 1, 1, 1)
    f.write_text("0: 0F0 0B0\n1: 1F0 1B0\n")
    with pytest.raises(SimtrainError, match="rank 1 but parallel.pp = 1"):
        S.load_schedule_file(f, 1, 1, 1)
    with pytest.raises(SimtrainError, match="cannot read"):
        S.load_schedule_file(tmp_path / "missing.txt", 1, 1, 1)


# ---------------------------------------------------------------- rejected schedules


def _reject(actions: dict[int, tuple[Action, ...]], pp: int, m: int, vp: int = 1) -> str:
    with pytest.raises(ScheduleError) as e:
        validate(Schedule("bad", pp, vp, m, actions))
    return str(e.value)


def _acts(text: str) -> dict[int, tuple[Action, ...]]:
    return {r: tuple(a) for r, a in parse_schedule_text(text).items()}


def test_deadlock_is_rejected_with_the_grid_and_the_marked_action() -> None:
    # rank 1 wants micro-batch 1 first, but rank 0 sends it only after 0B0, which waits
    # for 1B0, which rank 1 runs after 1F1: a cycle
    msg = _reject(_acts("0: 0F0 0B0 0F1 0B1\n1: 1F1 1F0 1B0 1B1\n"), 2, 2)
    first, *grid = msg.splitlines()
    assert "deadlock" in first and "1F1 on rank 1 waits for 0F1" in first
    assert grid[0].split() == ["step", "rank", "0", "rank", "1"]
    assert grid[1].split() == ["0", "0F0", ">>1F1<<"]
    assert sum(">>" in line for line in grid) == 1


@pytest.mark.parametrize(
    "text,pp,m,expect,marked",
    [
        ("0: 0F0 0B0 0F0 0B1\n", 1, 2, "0F0 runs twice", ">>0F0<<"),
        ("0: 0F0 0B0\n", 1, 2, "0F1 never runs", None),
        ("0: 0F0 1F0 0B0 1B0\n1:\n", 2, 1, "stage 1 is placed on rank 1", ">>1F0<<"),
        ("0: 0F0 0B0 0W0 0F1 0B1\n", 1, 2, "0W1 never runs", None),
        ("0: 0F0 0W0 0B0\n", 1, 1, "0W0 runs before its backward", ">>0W0<<"),
        ("0: 0F0 0F3 0B0\n", 1, 2, "outside 1 stages x 2 micro-batches", ">>0F3<<"),
        ("0: 0F0 0B0\n3: 3F0\n", 1, 1, "actions for rank 3", None),
    ],
)
def test_malformed_schedules_are_rejected(text: str, pp: int, m: int, expect: str, marked: str | None) -> None:
    msg = _reject(_acts(text), pp, m)
    assert expect in msg.splitlines()[0]
    if marked:
        assert marked in msg
    else:
        assert ">>" not in msg


def test_long_grids_show_a_window_around_the_mark() -> None:
    sched = S.build("interleaved", 4, 4, 32)
    acts = dict(sched.actions)
    r2 = list(acts[2])
    i, j = r2.index(Action(6, "B", 5)), r2.index(Action(6, "F", 9))
    r2[i], r2[j] = r2[j], r2[i]  # run a backward before the forward its gradient needs
    acts[2] = tuple(r2)
    msg = _reject(acts, 4, 32, vp=4)
    assert "deadlock: 6B5 on rank 2" in msg and ">>6B5<<" in msg
    assert "earlier steps" in msg and "later steps" in msg
    assert len(msg.splitlines()) < 40


def test_schedule_file_errors_are_one_line(tmp_path) -> None:
    f = tmp_path / "s.txt"
    f.write_text("")
    with pytest.raises(SimtrainError, match="has no actions"):
        S.load_schedule_file(f, 1, 1, 1)
    f.write_text("0: 0F0 0B0\n")  # one micro-batch written, two needed
    with pytest.raises(SimtrainError, match="schedules 1 micro-batches but the scenario has 2"):
        S.load_schedule_file(f, 1, 1, 2)
    f.write_text("0: 0F0 0B1 0F1 0B0\n")
    with pytest.raises(ScheduleError) as e:
        S.load_schedule_file(f, 1, 1, 2)
    assert len(str(e.value).splitlines()) == 1  # the grid is for `simtrain schedules`, not the error line


@pytest.mark.parametrize("name,pp,vp,m", [("gpipe", 4, 1, 8), ("1f1b", 4, 1, 8), ("interleaved", 4, 2, 8), ("zb-h1", 4, 1, 8),
                                          ("zb-v", 4, 2, 8), ("dualpipe", 4, 2, 8), ("llama3", 4, 2, 8)])
def test_rank_ends_equal_evaluate(name: str, pp: int, vp: int, m: int) -> None:
    from simtrain.schedule.validate import rank_ends

    sched = S.build(name, pp, vp, m)
    cost = lambda a: 1.0 + 0.37 * a.stage + 0.11 * a.microbatch + (0.5 if a.kind == "B" else 0.0)  # noqa: E731
    ev = evaluate(sched, cost)
    ends = rank_ends(sched, [[cost(a) for a in sched.actions.get(r, ())] for r in range(pp)])
    assert ends == [[ev.end[a] for a in sched.actions.get(r, ())] for r in range(pp)]


def test_rank_ends_raises_on_deadlock_and_missing_actions() -> None:
    from simtrain.schedule.validate import rank_ends

    deadlocked = Schedule("bad", 2, 1, 2, _acts("0: 0F0 0B0 0F1 0B1\n1: 1F1 1F0 1B0 1B1\n"))
    with pytest.raises(ScheduleError, match="deadlock"):
        rank_ends(deadlocked, [[1.0] * 4, [1.0] * 4])
    missing = Schedule("bad", 2, 1, 1, _acts("0: 0F0 0B0\n1: 1B0\n"))
    with pytest.raises(ScheduleError):
        rank_ends(missing, [[1.0] * 2, [1.0]])
