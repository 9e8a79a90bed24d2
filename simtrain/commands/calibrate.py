"""`simtrain calibrate`: fit a software stack's free constants to measured step times and
write a stack file, so that a user's own stack is one measured run away."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from simtrain.commands import add_scenario_args, check_outputs


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "calibrate", help="fit a software stack's constants to measured step times and write a stack file",
        description="Fit the scenario's software stack to measured runs: one run (--step-time) fits "
        "stack.sustained_fraction, the share of the benchmarked GEMM and attention throughput the stack "
        "sustains; several runs of one stack (--runs FILE.csv) also fit stack.launch_us, the host time per "
        "kernel launch, and say when the runs cannot tell the two apart. Prints the fitted values and "
        "every run's residual; --out writes the scenario's stack file with the fitted values.",
    )
    add_scenario_args(p)
    p.add_argument("--step-time", type=float, metavar="SECONDS", help="measured step time of the scenario as given")
    p.add_argument("--runs", metavar="FILE.csv",
                   help="several measured runs: a CSV with columns scenario, step_time_s and optionally set "
                        "(overrides separated by ';', e.g. parallel.tp=4;training.global_batch=512)")
    p.add_argument("--out", metavar="FILE.toml", help="write the calibrated stack file here (e.g. stacks/mine.toml)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def _runs(args: argparse.Namespace) -> list[tuple[str | None, tuple[str, ...], float]]:
    from simtrain.scenario.errors import SimtrainError, bad

    if (args.step_time is None) == (args.runs is None):
        raise SimtrainError("calibrate: give either --step-time SECONDS (one run) or --runs FILE.csv (several); "
                            "e.g. simtrain calibrate nemo-gpt3-175b-128 --step-time 8.3")
    if args.step_time is not None:
        if not (args.step_time > 0 and math.isfinite(args.step_time)):
            raise bad("--step-time", args.step_time, "must be a positive number of seconds", "give e.g. --step-time 12.5")
        return [(args.scenario, tuple(args.overrides), args.step_time)]
    path = Path(args.runs)
    try:
        rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    except OSError as e:
        raise SimtrainError(f"--runs {args.runs!r}: cannot read it ({e.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise SimtrainError(f"--runs {args.runs!r}: not UTF-8 text; give a CSV file") from None
    if not rows or "step_time_s" not in rows[0] or "scenario" not in rows[0]:
        raise SimtrainError(f"--runs {args.runs!r}: needs a header with scenario and step_time_s (and optionally set); "
                            "e.g. scenario,step_time_s,set")
    out = []
    for i, r in enumerate(rows, 2):
        if None in r:  # (csv.DictReader files fields beyond the header under None)
            raise bad(f"--runs line {i}", ",".join(str(x) for x in r[None]), "has more fields than the header",
                      "quote a set column that holds commas, or drop the extra fields")
        try:
            t = float(r["step_time_s"])
        except (TypeError, ValueError):
            raise bad(f"--runs line {i} step_time_s", r["step_time_s"], "not a number", "write seconds, e.g. 12.5") from None
        if not (t > 0 and math.isfinite(t)):
            raise bad(f"--runs line {i} step_time_s", r["step_time_s"], "must be a positive number of seconds", "write e.g. 12.5")
        sets = tuple(x.strip() for x in (r.get("set") or "").split(";") if x.strip())
        out.append(((r["scenario"] or "").strip() or args.scenario, tuple(args.overrides) + sets, t))
    return out


def _check_consistent(runs: list[tuple[str | None, tuple[str, ...], float]]) -> None:
    """The same run measured twice with step times more than 10% apart cannot be fitted."""
    from simtrain.scenario.errors import SimtrainError

    seen: dict[tuple, float] = {}
    for name, sets, t in runs:
        key = (name, tuple(sorted(sets)))
        if key in seen and abs(t / seen[key] - 1) > 0.10:
            raise SimtrainError(f"--runs: scenario {name or 'default'} with {', '.join(sets) or 'no overrides'} is measured "
                                f"at {seen[key]:g} s and {t:g} s: the runs contradict each other; drop one or fix its layout")
        seen.setdefault(key, t)


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--out": (".toml",)})
    from simtrain.analysis.calibrate import fit_stack
    from simtrain.scenario.config import load_scenario
    from simtrain.scenario.errors import SimtrainError

    runs = _runs(args)
    _check_consistent(runs)
    scenarios = []
    from simtrain.engine.plan import make_plan

    for i, (name, sets, _) in enumerate(runs, 2):  # bad input fails here, before fitting
        try:
            scenarios.append(load_scenario(name, sets))
            make_plan(scenarios[-1])  # the layout's own checks (GPU count, divisibility), named by line
        except SimtrainError as e:
            if args.runs is None:
                raise
            raise SimtrainError(f"--runs line {i}: {e}") from None
    stacks = {s.stack.name for s in scenarios}
    if len(stacks) > 1:
        raise SimtrainError(f"--runs: the runs use different stacks ({', '.join(sorted(stacks))}); calibrate one stack at a time")
    factories = [lambda ov, n=name, s=sets: load_scenario(n, s + ov) for name, sets, _ in runs]
    targets = [t for _, _, t in runs]
    start = scenarios[0].stack.sustained_fraction
    fit = fit_stack(factories, targets, start, scenarios[0].stack.launch_us)
    if len(runs) > 1 and fit.rms_log_error > 0.10:
        raise SimtrainError(f"--runs: the runs contradict each other: the best fit leaves {100 * fit.rms_log_error:.0f}% RMS "
                            "error; check that they ran the same stack and that their layouts are transcribed right")
    if len(runs) == 1 and abs(fit.residuals[0]) > 0.01:  # the fraction hit its bound short of the step
        from simtrain.analysis.run import simulate

        # the closest step, simulated again (target x (1 + residual) rounds to 0 s for a
        # measured step 1e17 times the simulated one)
        closest = simulate(factories[0]((f"stack.sustained_fraction={fit.fraction!r}",))).step_time_s
        what = f"--runs line 2: step_time_s = {targets[0]:g}" if args.runs else f"--step-time {targets[0]:g}"
        raise SimtrainError(f"{what}: the simulated step cannot reach it with this stack (closest "
                            f"{closest:.4g} s, at sustained_fraction {fit.fraction:g}, the "
                            "bound); check the measured time, the layout and the stack's other choices")
    stack = scenarios[0].stack
    result = {"stack": stack.name, "runs": len(runs), "sustained_fraction": fit.fraction,
              "launch_us": fit.launch_us if fit.launch_us is not None else stack.launch_us,
              "launch_us_fitted": fit.launch_us is not None,
              "residuals": [{"scenario": n or "default", "set": list(s), "measured_s": t, "error": r}
                            for (n, s, t), r in zip(runs, fit.residuals)],
              "warnings": list(fit.warnings), "simulations": fit.simulations}
    if args.out:
        _write_stack(Path(args.out), scenarios[0], result)
        result["wrote"] = args.out
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_text(result))
    for w in fit.warnings:
        print(f"simtrain: calibrate: {w}", file=sys.stderr)
    return 0


def _text(r: dict) -> str:
    lines = [f"simtrain calibrate: stack {r['stack']}, {r['runs']} measured run{'s' if r['runs'] != 1 else ''}",
             f"  sustained_fraction  {r['sustained_fraction']:.4f}",
             f"  launch_us           {r['launch_us']:g}" + ("  (fitted)" if r["launch_us_fitted"] else
                                                         "  (kept: one run cannot fit it)" if r["runs"] == 1 else
                                                         "  (kept: these runs cannot fit it)"),
             "  run                                   measured s  residual"]
    for x in r["residuals"]:
        label = (x["scenario"] + (" " + " ".join(x["set"]) if x["set"] else ""))[:36]
        lines.append(f"  {label:<36} {x['measured_s']:>11.4g}  {100 * x['error']:>+7.2f}%")
    lines.append(f"  ({r['simulations']} simulations)")
    if r.get("wrote"):
        lines.append(f"  wrote {r['wrote']}: use it with --set cluster.stack={r['wrote']}")
    return "\n".join(lines)


def _toml(v) -> str:
    """A TOML value: strings quoted, booleans lower-case, floats exact, lists for tuples."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


def _write_stack(path: Path, scenario, r: dict) -> None:
    from dataclasses import fields

    from simtrain.scenario.errors import SimtrainError

    s = scenario.stack
    values = {f.name: getattr(s, f.name) for f in fields(s)}
    values["sustained_fraction"] = r["sustained_fraction"]
    values["launch_us"] = r["launch_us"]
    values["name"] = path.stem
    values["description"] = f"{s.name} calibrated on {r['runs']} measured run(s) by simtrain calibrate"
    lines = [f"# Written by `simtrain calibrate` from stack {s.name!r} ({s.source or 'no source given'}).",
             f"# Fitted: sustained_fraction = {r['sustained_fraction']:.4f}"
             + (f", launch_us = {r['launch_us']:g}" if r["launch_us_fitted"] else "") + " on these runs:"]
    for x in r["residuals"]:
        lines.append(f"#   {x['scenario']} {' '.join(x['set'])}: measured {x['measured_s']:g} s, residual {100 * x['error']:+.2f}%")
    lines.append("")
    for k, v in values.items():
        lines.append(f"{k} = {_toml(v)}")
    defaults = _stack_defaults(scenario)
    for section, table in defaults.items():
        lines += ["", f"[defaults.{section}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    try:
        path.write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise SimtrainError(f"--out {str(path)!r}: cannot write it ({e.strerror}); check the folder exists and is writable") from None


def _stack_defaults(scenario) -> dict:
    from simtrain.scenario.stack import load_stack_file

    try:
        _, defaults, _ = load_stack_file(scenario.stack.name)
    except Exception:
        return {}
    return defaults
