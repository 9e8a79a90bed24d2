"""Fitting a software stack's free constants to measured step times.

One measured run fixes `stack.sustained_fraction` (the stack's share of the benchmarked
GEMM and attention throughput): the step time falls monotonically as it rises, roughly as
t(f) = a + b/f (compute scales as 1/f, memory-bound kernels and exposed communication do
not), so a secant on that form converges in three or four simulations.
Several runs of one stack also fix `stack.launch_us` (host time per kernel launch), which
matters only where passes are launch-bound (small models, small micro-batches): the fit
minimises the squared log errors over a grid of launch costs, fitting the fraction at each,
and says when the runs cannot tell the two constants apart (the step times of every run
respond to both in the same proportion) or contradict each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from simtrain.scenario.config import Scenario

FRACTION_RANGE = (0.2, 2.0)  # above 1: faster than the kernels as benchmarked in isolation
# A fit that moves the stack's fraction by more than this factor either way says more about
# the run than about the stack's kernels: the catalog's fitted fractions span 0.75-1.05 of
# the benchmarked throughput (stacks/*.toml), so a 25% rescale of every GEMM and attention
# kernel to match one run means its gap lies elsewhere (communication, bubble, host time,
# or a layout transcribed wrong), which the compute scale then carries into every prediction.
PLAUSIBLE_SCALE = 1.25
LAUNCH_GRID_US = (0.0, 2.0, 4.0, 7.0, 10.0, 15.0, 25.0, 40.0)

Factory = Callable[[tuple[str, ...]], Scenario]


@dataclass(frozen=True)
class Fit:
    fraction: float
    residual: float  # relative step-time error at the fitted value
    at_bound: bool  # the fraction hit FRACTION_RANGE before the step time matched
    simulations: int


def _step(factory: Factory, overrides: tuple[str, ...]) -> float:
    from simtrain.analysis.run import simulate

    return simulate(factory(overrides)).step_time_s


def fit_fraction(factory: Factory, target_s: float, start: float = 1.0, extra: tuple[str, ...] = (),
                 tol: float = 1e-3, max_iter: int = 12) -> Fit:
    """The sustained fraction at which the scenario's step time equals `target_s`."""
    lo, hi = FRACTION_RANGE
    clamp = lambda x: min(hi, max(lo, x))  # noqa: E731

    def step(x: float) -> float:
        return _step(factory, extra + (f"stack.sustained_fraction={x!r}",))

    x0 = clamp(start)
    t0 = step(x0)
    n = 1
    if abs(t0 / target_s - 1) < tol:
        return Fit(x0, t0 / target_s - 1, False, n)
    x1 = clamp(x0 * t0 / target_s)  # as if the step were all compute
    if x1 == x0:
        return Fit(x0, t0 / target_s - 1, True, n)
    t1 = step(x1)
    n += 1
    for _ in range(max_iter):
        if abs(t1 / target_s - 1) < tol:
            break
        b = (t0 - t1) / (1 / x0 - 1 / x1) if x0 != x1 else 0.0
        a = t0 - b / x0
        if b <= 0:
            break
        x2 = clamp(b / (target_s - a)) if target_s > a else hi
        if x2 == x1:
            break
        x0, t0, x1 = x1, t1, x2
        t1 = step(x1)
        n += 1
    resid = t1 / target_s - 1
    return Fit(x1, resid, abs(resid) >= 10 * tol and x1 in (lo, hi), n)


def implausible(factor: float) -> bool:
    """A fit that rescaled the stack's fraction by more than PLAUSIBLE_SCALE either way."""
    return not 1 / PLAUSIBLE_SCALE <= factor <= PLAUSIBLE_SCALE


def scale_warning(fraction: float, start: float) -> str:
    """A line when fitting moved the fraction beyond PLAUSIBLE_SCALE of where it started."""
    factor = fraction / start if start > 0 else 1.0
    if not implausible(factor):
        return ""
    return (f"the fit scales every GEMM and attention kernel by x{factor:.2f}: no catalog stack is that far from "
            f"its kernels, so this run's gap is likely not in compute (communication, bubble, host time, or a layout "
            f"transcribed wrong); predictions with this fraction inherit it")


def _log_error(residual: float) -> float:
    """|log(simulated / measured)| for a relative residual; finite even where the ratio
    rounds to 0 (a measured step 1e17 times the simulated one has residual -1.0)."""
    return abs(math.log(max(1.0 + residual, 1e-300)))


@dataclass(frozen=True)
class StackFit:
    fraction: float
    launch_us: float | None  # None: not fitted (one run)
    residuals: tuple[float, ...]  # per run, relative step-time error
    rms_log_error: float
    warnings: tuple[str, ...]
    simulations: int


def fit_stack(factories: list[Factory], targets: list[float], start: float = 1.0,
              current_launch_us: float | None = None) -> StackFit:
    """Fit the sustained fraction (one run) or the fraction and the launch cost (several).
    When the runs cannot tell the launch cost apart from the fraction, the launch cost is
    not fitted: the stack's own `current_launch_us` is kept (launch_us None in the result)
    and the fraction is the one fitted at that launch cost, rather than whichever grid
    point happened to fit best by a hair."""
    if len(factories) == 1:
        f = fit_fraction(factories[0], targets[0], start)
        warn = (f"the fitted fraction hit its bound {f.fraction:g}: the simulated step cannot reach "
                f"{targets[0]:g} s with this stack; check the layout or the stack's other choices",) if f.at_bound else ()
        scale = scale_warning(f.fraction, start) if not f.at_bound else ""
        return StackFit(f.fraction, None, (f.residual,), _log_error(f.residual), warn + ((scale,) if scale else ()),
                        f.simulations)
    sims = 0
    best: tuple[float, float, float, list[float]] | None = None  # (rms, launch, fraction, residuals)
    table: dict[float, tuple[float, list[float]]] = {}
    fractions: dict[float, float] = {}
    grid = sorted(set(LAUNCH_GRID_US) | ({current_launch_us} if current_launch_us is not None else set()))
    for launch in grid:
        extra = (f"stack.launch_us={launch!r}",)
        # each run's own fraction, then their geometric mean (least squares in log space
        # when the step time is proportional to 1/fraction), then every run's residual
        own = [fit_fraction(fac, t, start, extra) for fac, t in zip(factories, targets)]
        sims += sum(f.simulations for f in own)
        fraction_l = math.exp(sum(math.log(f.fraction) for f in own) / len(own))
        res = []
        for fac, t in zip(factories, targets):
            res.append(_step(fac, extra + (f"stack.sustained_fraction={fraction_l!r}",)) / t - 1)
            sims += 1
        rms = math.sqrt(sum(_log_error(r) ** 2 for r in res) / len(res))
        table[launch] = (rms, res)
        fractions[launch] = fraction_l
        if best is None or rms < best[0]:
            best = (rms, launch, fraction_l, res)
    assert best is not None
    rms, launch, fraction, res = best
    warnings = []
    spread = max(v[0] for v in table.values()) - min(v[0] for v in table.values())
    fitted_launch: float | None = launch
    if spread < 0.005:
        kept = f"; the stack's {current_launch_us:g} us is kept" if current_launch_us is not None else ""
        warnings.append("the runs cannot tell the launch cost apart from the sustained fraction (every launch cost "
                        f"from {grid[0]:g} to {grid[-1]:g} us fits within 0.5%): the launch cost is "
                        f"not constrained{kept}; add a run with a small model or micro-batch")
        if current_launch_us is not None:
            fitted_launch = None
            rms, res = table[current_launch_us]
            fraction = fractions[current_launch_us]
    if rms > 0.10:
        warnings.append(f"the runs contradict each other: the best fit still leaves {100 * rms:.0f}% RMS error; "
                        "check that they are the same stack and that their layouts are transcribed right")
    scale = scale_warning(fraction, start)
    if scale:
        warnings.append(scale)
    return StackFit(fraction, fitted_launch, tuple(res), rms, tuple(warnings), sims)
