"""`simtrain validate`: reference cases load, transcriptions match the calibration CSVs,
unsupported cases are skipped with a reason, the inconsistent Llama 3 row is refused,
and the simulated error of a quick subset stays under thresholds set from what the
simulator achieves today (tighten them as calibration improves)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simtrain.analysis.validation import ReferenceCase, load_reference, run_case, run_validation, select
from simtrain.cli import main
from simtrain.scenario.config import load_scenario
from simtrain.scenario.errors import SimtrainError
from simtrain.scenario.layout import make_layout

CALIBRATION = Path(__file__).resolve().parents[2] / "shared" / "calibration"
TOOLS = Path(__file__).resolve().parents[1] / "tools"
if not CALIBRATION.is_dir():
    CALIBRATION = Path("/work/shared/calibration")

# |simulated / published - 1| of TFLOP/s per GPU on the source's basis, per quick case.
# Achieved when written: llama3-405b-8k -0.0%.
THRESHOLDS = {"llama3-405b-8k": 0.02}  # achieved -0.1% (H100 sustained fraction is calibrated on this row)


def test_reference_cases_load_and_name_scenarios() -> None:
    cases = load_reference()
    names = {c.name for c in cases}
    assert {"llama3-405b-8k", "llama3-405b-16k", "llama3-405b-128k", "llama3-405b-128k-as-printed"} <= names
    assert sum(c.name.startswith("megatron-sc21-gpt-") for c in cases) == 10  # Table 1
    assert sum(c.name.startswith("megatron-sc21-t2-") for c in cases) == 12  # Table 2
    assert {"llama3-70b-tpu-v5p-fsdp", "llama3-70b-tpu-v5p-fsdp-tp4"} <= names
    assert sum(c.name.startswith("nemo-") and not c.name.startswith(("nemo-fp8-", "nemo-moe-")) for c in cases) == 12  # NeMo 24.09 on H100 (step times)
    assert sum(c.name.startswith("nemo-fp8-") for c in cases) == 3  # NeMo 24.07 FP8 on H100
    assert sum(c.name.startswith("nemo-moe-") for c in cases) == 3  # Megatron-Bridge MoE FP8 on H100
    assert "deepseek-v3-2048-h800" in names
    assert "palm-540b-tpu-v4" in names
    for c in cases:
        # the published runs of tools/reference_sources.py carry their scenario inline
        assert c.inline or (Path(__file__).resolve().parents[1] / "scenarios" / f"{c.scenario}.toml").is_file(), c.name
        assert c.tflops_per_gpu or c.step_time_s or c.expect or c.expect_error, c.name
        if c.name.startswith("megatron-sc21"):
            assert c.basis == "megatron-hfu" and (c.hfu or c.name.startswith("megatron-sc21-t2-"))
        if c.name.startswith("llama3-405b"):
            assert c.basis == "model" and c.mfu


@pytest.mark.skipif(not CALIBRATION.is_dir(), reason="calibration CSVs not present")
def test_reference_numbers_are_the_csv_rows() -> None:
    read: dict[str, list[dict[str, str]]] = {}
    for case in load_reference():
        if not case.calibration:
            continue
        file, _, row = case.calibration.partition(" row ")
        folder = TOOLS if "/" in file else CALIBRATION  # tools/published/: transcriptions kept here
        if file not in read:
            read[file] = list(csv.DictReader(open(folder / file, newline="")))
        r = read[file][int(row) - 1]
        assert r["model"] == case.model
        if case.inline:  # judged on step time: the published one, else derived (the note says how)
            assert case.tflops_per_gpu is case.mfu is case.hfu is None and case.basis == "step", case.name
            if r["step_time_s"] and case.step_time_s:
                assert float(r["step_time_s"]) == case.step_time_s, case.name
            elif case.step_time_s:
                assert case.note.startswith("derived: "), case.name
            continue
        assert (float(r["tflops_per_gpu"]) if r["tflops_per_gpu"] else None) == case.tflops_per_gpu, case.name
        assert (float(r["step_time_s"]) if r["step_time_s"] else None) == case.step_time_s, case.name
        for key in ("mfu", "hfu"):
            assert (float(r[key]) if r[key] else None) == getattr(case, key), (case.name, key)
        assert r["model"] == case.model


def test_layouts_of_the_megatron_scenarios_match_their_rows() -> None:
    # loading needs parallel.flash_attention in the engine; the layout arithmetic does not
    import tomllib

    for case in select(load_reference(), "megatron-sc21"):
        data = tomllib.loads((Path(__file__).resolve().parents[1] / "scenarios" / f"{case.scenario}.toml").read_text())
        p = data["parallel"]
        assert p["tp"] * p["pp"] * p["dp"] == data["cluster"]["gpus"]
        assert p["recompute"] == "full" and p["flash_attention"] is False
        assert data["training"]["global_batch"] % (p["dp"] * p["micro_batch"]) == 0


def test_printed_llama3_row_is_refused_in_one_line() -> None:
    s = load_scenario("llama3-405b-128k-as-printed")
    with pytest.raises(SimtrainError) as e:
        make_layout(s)
    msg = str(e.value)
    assert "\n" not in msg and "cluster.gpus = 16384" in msg and "8*16*16*4 = 8192" in msg and "parallel.dp = 8" in msg
    r = run_case(select(load_reference(), "llama3-405b-128k-as-printed")[0])
    assert r.status == "refused"
    assert make_layout(load_scenario("llama3-405b-128k")).world == 16384


def test_unsupported_cases_are_skipped_with_a_reason() -> None:
    case = ReferenceCase(name="x", scenario="llama3-405b-8k", group="g", source="s", tflops_per_gpu=1.0)
    r = run_case(case, ("cluster.topology=no-such-topology",))
    assert r.status == "skipped" and "cluster.topology" in r.reason
    rep = run_validation((case,), overrides=("parallel.nonsense=1",))
    assert rep.results[0].status == "skipped" and rep.mape_by_group() == {}


def test_select() -> None:
    cases = load_reference()
    assert [c.name for c in select(cases, "megatron-*-1t")] == ["megatron-sc21-gpt-1t"]
    assert len(select(cases, "Llama 3 Table")) == 4
    with pytest.raises(SimtrainError):
        select(cases, "nothing-like-this")


def test_quick_subset_error_stays_under_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--only", "llama3-405b-8k", "--json", "--mode", "zero-shot,calibrated"]) == 0
    out = json.loads(capsys.readouterr().out)
    (case,) = out["cases"]
    assert case["status"] == "ok"
    tf = next(c for c in case["comparisons"] if c["metric"] == "tflops_per_gpu")
    assert tf["published"] == 430.0
    assert abs(tf["error"]) <= THRESHOLDS["llama3-405b-8k"], tf
    # row 1 is the row the llama3-meta stack's constant was fitted on: a fit, not a prediction
    assert "Llama 3 Table 4" not in out["mape_percent"]
    assert out["modes"]["calibrated"]["fits"]["Llama 3 Table 4"]["case"] == "llama3-405b-8k"
    # row 1 ran: it fits (73.3 of 79.6 GiB with the stack's memory-efficient norms)
    assert case["simulated"]["memory"]["fits_in_memory"] is True


def test_zero_shot_only_json_still_has_its_per_mode_summary(capsys: pytest.CaptureFixture[str]) -> None:
    # tools/validation_table.py reads `modes`: a --mode zero-shot run must carry it too
    assert main(["validate", "--only", "megatron-sc21-gpt-1.7b", "--json", "--mode", "zero-shot", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["modes"]) == {"zero-shot"}
    assert out["modes"]["zero-shot"]["rows"] == 1


def test_cli_text_lists_claims_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    # seed 004's two roofline claims (Austin et al.): FSDP alone is communication-bound on the
    # v5p slice, FSDP with TP4 compute-bound; both simulated, with a progress line per case
    assert main(["validate", "--only", "tpu-v5p"]) == 0
    captured = capsys.readouterr()
    assert "llama3-70b-tpu-v5p-fsdp-tp4" in captured.out and "[2/2]" in captured.err
    assert "claim communication-bound; simulated communication-bound" in captured.out
    assert "claim compute-bound; simulated compute-bound" in captured.out
    assert "2 cases: 2 compared, 0 skipped" in captured.out
    assert main(["validate", "--only", "nothing-like-this"]) == 2


def test_nemo_scenarios_match_their_published_rows() -> None:
    import tomllib

    rows = list(csv.DictReader(open(TOOLS / "published" / "nvidia_dgxc_nemo_2409.csv", newline="")))
    cases = [c for c in select(load_reference(), "nemo-") if "nvidia_dgxc_nemo_2409" in c.calibration]
    assert len(cases) == len(rows) == 12
    for case in cases:
        r = rows[int(case.calibration.rpartition(" row ")[2]) - 1]
        data = tomllib.loads((TOOLS.parent / "scenarios" / f"{case.scenario}.toml").read_text())
        p, t = data["parallel"], data["training"]
        assert p["tp"] * p["pp"] * p["cp"] * p["dp"] == data["cluster"]["gpus"] == int(r["num_gpus"]), case.name
        for key in ("tp", "pp", "vp", "cp"):
            assert p[key] == int(r[key]), (case.name, key)
        assert p["micro_batch"] == int(r["micro_batch"]) and t["global_batch"] == int(r["global_batch_seqs"])
        assert t["seq_len"] == int(r["seq_len"]) and data["model"]["name"] == r["model"]
        # one stack for every NeMo case, whose one constant is fitted on all of them together
        assert data["cluster"]["stack"] == "megatron-core" and "sustained_fraction" not in data["cluster"]


# The four slowest cases (about 90 of the 128 CPU-seconds of the cases with scenario files:
# thousands of micro-batches, or MoE all-to-alls in every layer) run in
# test_slow_validation_cases, which CI skips; `simtrain validate` runs them all.
SLOW_CASES = ("nemo-moe-qwen3-235b-a22b-256", "megatron-sc21-t2-530b-ptdp-560",
              "megatron-sc21-t2-530b-ptdp-1120", "megatron-sc21-gpt-1t")


def test_full_validation_stays_within_achieved_errors(capsys: pytest.CaptureFixture[str]) -> None:
    # thresholds set from what the simulator achieves on these cases (README "Validation and
    # calibration"); the published runs of tools/reference_sources.py, with inline
    # scenarios, have their own group errors: tests/test_reference_sources.py
    cases = tuple(c for c in load_reference() if not c.inline and c.name not in SLOW_CASES)
    report = run_validation(cases, modes=("zero-shot",))
    out = json.loads(json.dumps(report.to_json()))
    mape = out["mape_percent"]
    assert mape["Llama 3 Table 4"]["mape"] <= 2.0, mape  # achieved 0.5% (row 1 fitted)
    err = {c["case"]: c["comparisons"][0]["error"] for c in out["cases"] if c["comparisons"]}
    assert abs(err["llama3-405b-128k"]) <= 0.03, err  # row 3, never fitted on: achieved -0.8%
    assert mape["Megatron-LM SC21 Table 1"]["mape"] <= 7.5, mape  # achieved 5.6% on 9 runs, never fitted on
    assert mape["Megatron-LM SC21 Table 2, PTD-P"]["mape"] <= 8.0, mape  # achieved 5.5% on 4 runs, never fitted on
    # NeMo 24.09 on H100: the megatron-core stack's one constant is fitted on all 12 runs
    # together, so every row is a fit (left out of the zero-shot error); its residuals
    nemo = [c for c in out["cases"] if c["group"] == "NVIDIA DGX Cloud, NeMo 24.09"]
    assert len(nemo) == 12 and all(c["fitted"] for c in nemo), nemo
    assert "NVIDIA DGX Cloud, NeMo 24.09" not in mape, mape
    worst = max(abs(c["comparisons"][0]["error"]) for c in nemo)
    # achieved 2.5% (Llama 3.1 8B on 8 GPUs), 1.3% RMS, since the output layer runs over
    # Megatron's padded vocabulary (GPT-3 175B had been 5.6% off, its output GEMM misaligned)
    assert worst <= 0.05, worst
    # FP8 and mixture-of-experts runs, never fitted on (README "Validation and calibration")
    assert mape["NeMo 24.07 FP8, H100"]["mape"] <= 7.0, mape  # achieved 5.9% (-6.1%, -3.4%, +8.2%)
    # achieved (without the slow Qwen3 235B row) 29.6%: Qwen3 30B -34.6% (its preset's
    # HybridEP dispatcher), DeepSeek-V3 -24.6% (DeepEP and the 1F1B all-to-all overlap, as
    # its launcher set them): the EP model is too fast where the dispatchers deduplicate or
    # overlap (README "Validation and calibration"). With a plain exposed all-to-all standing
    # in, it was 14.3% (+4.6%, +24.0%)
    assert mape["Megatron-Bridge MoE FP8, H100"]["mape"] <= 32.0, mape
    # DeepSeek-V3 on H800 with DualPipe's overlap as claimed: achieved -8.9% (exact
    # multi-head latent attention, multi-token prediction, DeepSeek's recomputation, the
    # megatron-core constant fitted on NeMo's 12 runs; -13.0% with it fitted on one run)
    assert mape["DeepSeek-V3 report (H800)"]["mape"] <= 10.0, mape
    # PaLM 540B on TPU v4: a prediction with assumed TPU constants, achieved -2.3%
    assert mape["PaLM 540B on TPU v4 (Chowdhery et al. 2022)"]["mape"] <= 5.0, mape
    # ZeRO-3 (DeepSpeed 2021) is a known gap: achieved 66.5% with DeepSpeed v0.3's per-tensor
    # list collectives (stacks/deepspeed-zero3-2021.toml; 193% without them); guard against it growing
    assert mape["Megatron-LM SC21 Table 2, ZeRO-3"]["mape"] <= 70.0, mape
    statuses = {c["case"]: c["status"] for c in out["cases"]}
    assert statuses["llama3-70b-tpu-v5p-fsdp"] == "ok" and statuses["llama3-70b-tpu-v5p-fsdp-tp4"] == "ok"


@pytest.mark.skipif(not __import__("os").environ.get("SIMTRAIN_SLOW_TESTS"),
                    reason="about 90 CPU-seconds; set SIMTRAIN_SLOW_TESTS=1 (simtrain validate runs these too)")
def test_slow_validation_cases() -> None:
    cases = tuple(c for c in load_reference() if c.name in SLOW_CASES)
    out = json.loads(json.dumps(run_validation(cases, modes=("zero-shot",)).to_json()))
    err = {c["case"]: c["comparisons"][0]["error"] for c in out["cases"]}
    assert abs(err["nemo-moe-qwen3-235b-a22b-256"]) <= 0.18, err  # achieved -15.9% (its preset's all-to-all overlap)
    assert abs(err["megatron-sc21-t2-530b-ptdp-560"]) <= 0.13, err  # achieved +10.8% (TFLOP/s basis)
    assert abs(err["megatron-sc21-t2-530b-ptdp-1120"]) <= 0.14, err  # achieved +11.7%
    assert abs(err["megatron-sc21-gpt-1t"]) <= 0.10, err  # achieved +7.4%


def test_calibrated_and_leave_one_source_out_readings() -> None:
    # two sources, a few rows each: calibration fits each source's constant on its flagged
    # row (NeMo: the GPT-3 175B run, its calibration_row), which then
    # reproduces that row and is left out of the calibrated error; leave-one-source-out
    # predicts each source with the other source's fitted fraction
    from simtrain.analysis.validation.modes import summary

    names = ("nemo-8b-8", "nemo-gpt3-175b-128", "megatron-sc21-gpt-1.7b", "megatron-sc21-gpt-3.6b")
    cases = tuple(c for c in load_reference() if c.name in names)
    report = run_validation(cases, modes=("zero-shot", "calibrated", "loso"))
    cal, loso = report.modes["calibrated"], report.modes["loso"]
    nemo, sc21 = "NVIDIA DGX Cloud, NeMo 24.09", "Megatron-LM SC21 Table 1"
    assert cal.fits[nemo].case == "nemo-gpt3-175b-128"
    assert cal.fits[sc21].case == "megatron-sc21-gpt-1.7b"  # no flagged row: the first
    fitted_row = next(r for r in cal.results if r.case.name == "nemo-gpt3-175b-128")
    assert abs(fitted_row.primary.error) < 0.002 and cal.excluded(fitted_row)
    assert cal.mape_by_group()[nemo][1] == 1  # only nemo-8b-8 is a prediction
    assert loso.fraction_used[nemo] == pytest.approx(cal.fits[sc21].fraction, rel=1e-12)
    assert loso.fraction_used[sc21] == pytest.approx(cal.fits[nemo].fraction, rel=1e-12)
    assert loso.mape_by_group()[nemo][1] == 2  # no constant of its own: both rows are predictions
    # zero-shot leaves out the rows the catalog constant was fitted on: every NeMo row
    assert nemo not in report.mape_by_group() and report.mape_by_group()[sc21][1] == 2
    s = summary(report.modes)
    assert set(s) == {"zero-shot", "calibrated", "loso"} and s["loso"]["rows"] == 4
    # the bias has one sign for every source, negative = simulated too fast: NeMo compares
    # step times (kept as they are), SC21 TFLOP/s (a high throughput is a short step: flipped)
    errs = {r.case.name: r.primary.error for r in loso.results}
    assert s["loso"]["by_source"][nemo]["bias"] == pytest.approx(50 * (errs["nemo-8b-8"] + errs["nemo-gpt3-175b-128"]))
    assert s["loso"]["by_source"][sc21]["bias"] == pytest.approx(
        -50 * (errs["megatron-sc21-gpt-1.7b"] + errs["megatron-sc21-gpt-3.6b"]))


@pytest.mark.parametrize("case_name", ["nemo-fp8-8b-8", "nemo-fp8-70b-64", "nemo-fp8-gpt3-175b-128",
                                       "nemo-moe-qwen3-30b-a3b-16", "nemo-moe-qwen3-235b-a22b-256",
                                       "nemo-moe-deepseek-v3-1024", "deepseek-v3-2048-h800"])
def test_fp8_and_moe_scenarios_match_their_published_rows(case_name: str) -> None:
    """The layout, batch and precision of each FP8 / MoE scenario are its CSV row's."""
    case = next(c for c in load_reference() if c.name == case_name)
    file, _, row = case.calibration.partition(" row ")
    r = list(csv.DictReader(open(TOOLS / file, newline="")))[int(row) - 1]
    s = load_scenario(case.scenario)
    L = make_layout(s)
    assert L.world == int(r["num_gpus"]) and (L.tp, L.pp) == (int(r["tp"]), int(r["pp"]))
    assert L.vp == int(r["vp"] or 1) and L.cp == int(r["cp"] or 1)
    assert L.global_batch == int(r["global_batch_seqs"]) and s.training.seq_len == int(r["seq_len"])
    if r.get("micro_batch"):
        assert L.micro_batch == int(r["micro_batch"])
    if r.get("ep"):
        assert L.ep == int(r["ep"])
    assert s.training.precision == "fp8"  # every one of these rows ran FP8


def test_megatron_bridge_moe_rows_run_their_presets_dispatchers() -> None:
    """Megatron-Bridge's launcher and presets of each row: DeepSeek-V3 on H100 with DeepEP,
    the 1F1B all-to-all overlap and no overlapped gradient reduction (run_script.py
    @fa0315ae2); Qwen3 235B-A22B with the all-to-all overlap (@21d102f5e); Qwen3 30B-A3B with
    the HybridEP dispatcher and no overlap (@63b08b397). DeepEP and HybridEP send a token
    once per destination node: node-limited dispatch (DeepSeek-V3's routing reaches 4 nodes,
    Qwen3 30B's two nodes are all there are)."""
    cases = {c.name: c for c in load_reference()}
    got = {}
    for n in ("nemo-moe-deepseek-v3-1024", "nemo-moe-qwen3-235b-a22b-256", "nemo-moe-qwen3-30b-a3b-16"):
        s = load_scenario(cases[n].scenario)
        got[n] = (s.schedule.name, s.parallel.ep_node_limit, s.parallel.overlap_grad_reduce)
    assert got == {"nemo-moe-deepseek-v3-1024": ("interleaved-ep-overlap", 4, False),
                   "nemo-moe-qwen3-235b-a22b-256": ("interleaved-ep-overlap", 0, True),
                   "nemo-moe-qwen3-30b-a3b-16": ("1f1b", 2, True)}


def test_a_reference_file_without_cases_is_refused(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # a CI gate (--max-error) over no cases would pass with nothing tested
    empty = tmp_path / "empty.toml"
    empty.write_text("# no cases yet\n")
    assert main(["validate", "--reference", str(empty), "--max-error", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no cases" in err[0]
