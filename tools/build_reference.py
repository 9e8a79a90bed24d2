"""Build simtrain/data/reference.toml from the published measurements in
../shared/calibration/*.csv (transcriptions of the papers, with their sources) and
tools/published/*.csv (further transcriptions, each row quoting the line it copies).

Run from the repository root:  python tools/build_reference.py [CALIBRATION_DIR]

Each reference case names a scenario in scenarios/ and the CSV row (1-based data row)
whose published numbers it is judged against; the row's identifying columns are checked
against the scenario so a reordered CSV cannot silently attach the wrong numbers.
The cases of tools/reference_sources.py follow them, each carrying its scenario inline
([cases."NAME".scenario]) and judged on its step time.
The numbers are copied, never typed in by hand; simulation code never reads this file.
"""

from __future__ import annotations

import csv
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import reference_sources  # noqa: E402  (tools/ is not a package)

OUT = ROOT / "simtrain" / "data" / "reference.toml"

LLAMA = "Llama 3 Table 4"
SC21 = "Megatron-LM SC21 Table 1"
SEED4 = "How to Scale Your Model ch. 6 (seed 004)"
SC21_T2P = "Megatron-LM SC21 Table 2, PTD-P"
SC21_T2Z = "Megatron-LM SC21 Table 2, ZeRO-3"
NEMO = "NVIDIA DGX Cloud, NeMo 24.09"
# Transcriptions kept in this repository (tools/published/), with the README lines they
# copy; file names with a "/" are read relative to tools/ instead of the calibration folder.
NEMO_CSV = "published/nvidia_dgxc_nemo_2409.csv"
PALM = "PaLM 540B on TPU v4 (Chowdhery et al. 2022)"
NEMO_NOTE = ("stack megatron-core: its sustained_fraction is fitted on the 12 NeMo 24.09 runs together "
             "(simtrain calibrate --runs): every row of this source is a fit, none a prediction")
DSV3 = "DeepSeek-V3 report (H800)"
DSV3_CSV = "published/deepseek_v3_2024.csv"
NEMO_FP8 = "NeMo 24.07 FP8, H100"
NEMO_FP8_CSV = "published/nemo_2407_and_long_sequence.csv"
MB_MOE = "Megatron-Bridge MoE FP8, H100"
MB_CSV = "published/nemo_megatron_bridge_perf_summary.csv"
MOE_NOTE = "experts force-balanced by NVIDIA for the benchmark (the table's footnote), as simulated"

# (case = scenario name, CSV file, 1-based data row, group, extra fields)
CASES: list[tuple[str, str, int, str, dict]] = [
    ("llama3-405b-8k", "llama3_table4.csv", 1, LLAMA,
     {"fitted": "stacks/llama3-meta.toml sustained_fraction", "calibration_row": True}),
    ("llama3-405b-16k", "llama3_table4.csv", 2, LLAMA, {}),
    ("llama3-405b-128k", "llama3_table4.csv", 3, LLAMA,
     {"note": "simulated with DP8: the printed DP4 is inconsistent with 16,384 GPUs and 16M tokens"}),
    ("llama3-405b-128k-as-printed", "llama3_table4.csv", 3, LLAMA,
     {"expect_error": "does not match tp*cp*pp*dp",
      "note": "the row exactly as printed; the simulator must refuse it"}),
    *[(f"megatron-sc21-gpt-{m}", "megatron2021.csv", i + 1, SC21, {})
      for i, m in enumerate(["1.7b", "3.6b", "7.5b", "18b", "39b", "76b", "145b", "310b", "530b", "1t"])],
    # Table 2 (data rows 11-22): ZeRO-3 vs PTD-P, 175B and 530B, checks never fitted on
    *[(f"megatron-sc21-t2-{c}", "megatron2021.csv", 11 + i, SC21_T2Z if "zero3" in c else SC21_T2P, {})
      for i, c in enumerate(["175b-zero3-384", "175b-zero3-768", "175b-zero3-1536", "530b-zero3-640", "530b-zero3-1120",
                             "530b-zero3-2240", "175b-ptdp-384", "175b-ptdp-768", "175b-ptdp-1536", "530b-ptdp-560",
                             "530b-ptdp-1120", "530b-ptdp-2240"])],
    # NVIDIA's published NeMo 24.09 H100 runs: step time is the measurement compared (the
    # READMEs' MFU formulas differ slightly from the PaLM convention, see the CSV's notes)
    *[(f"nemo-{c}", NEMO_CSV, i + 1, NEMO,
       {"note": NEMO_NOTE, "fitted": "stacks/megatron-core.toml sustained_fraction"}
       | ({"calibration_row": True} if c == "gpt3-175b-128" else {}))
      for i, c in enumerate(["8b-8", "8b-128", "70b-64", "70b-512", "70b-2048", "405b-576", "405b-2304",
                             "gpt3-175b-128", "gpt3-175b-2048", "nemotron4-15b-16", "nemotron4-15b-64",
                             "nemotron4-15b-2048"])],
    # Mixture-of-experts and FP8 runs (issue 17): the DeepSeek-V3 report's pre-training
    # cost, NeMo 24.07's FP8 rows for layouts simulated in BF16 above, and NVIDIA's
    # Megatron-Bridge MoE rows on H100 (FP8)
    ("deepseek-v3-2048-h800", DSV3_CSV, 1, DSV3,
     {"basis": "step", "calibration_row": True,
      "note": "step derived from 180K H800 GPU hours per trillion tokens; micro-batch and stage split "
              "not published (assumed)"}),
    ("nemo-fp8-8b-8", NEMO_FP8_CSV, 11, NEMO_FP8, {"basis": "step"}),
    ("nemo-fp8-70b-64", NEMO_FP8_CSV, 12, NEMO_FP8, {"basis": "step"}),
    ("nemo-fp8-gpt3-175b-128", NEMO_FP8_CSV, 3, NEMO_FP8, {"basis": "step", "calibration_row": True}),
    ("nemo-moe-qwen3-30b-a3b-16", MB_CSV, 50, MB_MOE, {"basis": "step", "calibration_row": True, "note": MOE_NOTE}),
    ("nemo-moe-qwen3-235b-a22b-256", MB_CSV, 96, MB_MOE, {"basis": "step", "note": MOE_NOTE}),
    ("nemo-moe-deepseek-v3-1024", MB_CSV, 280, MB_MOE,
     {"basis": "step", "note": MOE_NOTE + "; the row's primary value (338; the parenthesized 330 is the blockwise "
                                         "1x128/128x128 run, the table's footnote) is per-tensor FP8, simulated as current "
                                         "scaling (the H100 perf matrix lists fp8_cs and fp8_ss only)"}),
    ("palm-540b-tpu-v4", "published/palm_2022.csv", 1, PALM,
     {"note": "one of the two pods simulated (97% weak scaling to two); TPU v4 efficiencies assumed, never fitted; "
              "PaLM's parallel block and collective-matmul overlap not modelled; HFU differs because PaLM "
              "rematerialized less than a full forward"}),
]

# Seed 004 publishes no measurement, only a roofline verdict per layout.
SEED4_SOURCE = "Austin et al., How to Scale Your Model (2025), ch. 6 \"Training LLaMA 3 on TPUs\" (roofline estimate, no measurement)"
CLAIMS = [
    ("llama3-70b-tpu-v5p-fsdp", SEED4, "communication-bound",
     "pure FSDP over 8,960 v5p chips at 4M tokens: ~468 tokens per chip, below the ~850 FSDP needs, so ICI-bound"),
    ("llama3-70b-tpu-v5p-fsdp-tp4", SEED4, "compute-bound",
     "~2,048-way FSDP x 4-way TP: above the 453 tokens per chip bound, so compute-bound"),
]


def _num(text: str) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def _check(row: dict[str, str], scenario: dict, case: str) -> None:
    par = scenario.get("parallel", {})
    want = {"num_gpus": scenario["cluster"]["gpus"], "tp": par.get("tp", 1), "pp": par.get("pp", 1)}
    for key, value in want.items():
        if int(row[key]) != int(value):
            raise SystemExit(f"{case}: CSV {key} = {row[key]} but the scenario has {value}; fix CASES or the scenario")


def _basis(row: dict[str, str]) -> str:
    return "megatron-hfu" if row["tflops_basis"].startswith("hardware (Megatron") else "model"


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return repr(v)


def _table(prefix: str, values: dict) -> list[str]:
    """One TOML table and, after it, its sub-tables (nested dicts), in insertion order."""
    lines = [f"[{prefix}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for k, v in values.items():
        if isinstance(v, dict):
            lines += _table(f"{prefix}.{k}", v)
    return lines


def _inline_case(case: dict) -> list[str]:
    fields = {k: v for k, v in case.items() if k != "name"}
    return _table(f"cases.{json.dumps(case['name'])}", fields) + [""]


def build(calibration: Path) -> str:
    lines = [
        "# Published measurements the simulator is validated against (`simtrain validate`).",
        "# GENERATED by tools/build_reference.py from ../shared/calibration/*.csv; do not edit by",
        "# hand, re-run the tool. Each case names a scenario in scenarios/ and the CSV row its",
        "# numbers come from. basis: \"model\" = TFLOP/s of model FLOPs (MFU; PaLM convention,",
        "# the Llama 3 paper does not state its formula); \"megatron-hfu\" = Narayanan et al. 2021",
        "# eq. 3, 96*B*s*L*h^2*(1 + s/6h + V/16Lh), which counts the recomputed forward (HFU).",
        "",
    ]
    cache: dict[str, list[dict[str, str]]] = {}
    for case, file, row_no, group, extra in CASES:
        folder = ROOT / "tools" if "/" in file else calibration
        rows = cache.setdefault(file, list(csv.DictReader(open(folder / file, newline=""))))
        row = rows[row_no - 1]
        scen_path = ROOT / "scenarios" / f"{case}.toml"
        scenario = tomllib.loads(scen_path.read_text())
        if "expect_error" not in extra:
            _check(row, scenario, case)
        fields: dict[str, object] = {
            "scenario": case,
            "group": group,
            "source": row["source"],
            "calibration": f"{file} row {row_no}",
            "model": row["model"],
            "basis": _basis(row),
        }
        for key in ("tflops_per_gpu", "mfu", "hfu", "step_time_s"):
            v = _num(row[key])
            if v is not None:
                fields[key] = v
        fields.update(extra)
        lines.append(f"[cases.{json.dumps(case)}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
        lines.append("")
    for case, group, claim, note in CLAIMS:
        lines.append(f"[cases.{json.dumps(case)}]")
        fields = {"scenario": case, "group": group, "source": SEED4_SOURCE, "basis": "model", "expect": claim, "note": note}
        lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
        lines.append("")
    lines += ["# Published runs of tools/published/*.csv (tools/reference_sources.py): scenarios inline,",
              "# judged on step time (basis \"step\"); memory claims (expect) are not simulated.", ""]
    for case in reference_sources.all_cases():
        lines += _inline_case(case)
    text = "\n".join(lines)
    tomllib.loads(text)  # must parse
    return text


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Rebuild simtrain/data/reference.toml from the published transcriptions.")
    ap.add_argument("calibration", nargs="?", default=str(ROOT.parent / "shared" / "calibration"),
                    help="folder of the shared calibration CSVs (default: ../shared/calibration)")
    calibration = Path(ap.parse_args().calibration)
    if not calibration.is_dir():
        calibration = Path("/work/shared/calibration")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(build(calibration))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
