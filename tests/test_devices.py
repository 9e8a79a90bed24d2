"""Devices as TOML: the devices/ catalog loads to exactly the Device values the code held
before, every Device field has a TOML key, a scenario's [device] table changes a device
key by key, and bad device input fails with one line."""

import dataclasses

import pytest

from simtrain.analysis.run import simulate
from simtrain.engine.plan import make_plan
from simtrain.hardware.devices import CATALOG, Device, get_device
from simtrain.scenario.config import load_scenario
from simtrain.scenario.device_keys import DEVICE_KEYS
from simtrain.scenario.errors import SimtrainError
from tests.test_bad_files import assert_one_line_error

# The Python catalog as it was in simtrain/hardware/devices.py before the values moved to
# devices/*.toml (main at commit e0e4f10), with the attention family of its FAMILY table.
_HOPPER = ((128, 256, 1.0), (256, 128, 1.0), (128, 128, 0.93), (64, 128, 0.80))
_AMPERE = ((128, 256, 1.0), (256, 128, 1.0), (128, 128, 0.95), (64, 128, 0.82))
_TPU = ((128, 128, 1.0),)
BEFORE = {
    "A100-40GB": (Device("A100-40GB", 312e12, 1555e9, 40 * 2**30, 108, _AMPERE, 0.871, 99, 0.70, 0.63, 0.85, 2e-6, 1.0, 0.21), "ampere"),
    "A100-80GB": (Device("A100-80GB", 312e12, 2039e9, 80 * 2**30, 108, _AMPERE, 0.871, 99, 0.70, 0.63, 0.85, 2e-6, 1.0, 0.21), "ampere"),
    "H100-SXM": (Device("H100-SXM", 989e12, 3.35e12, 81559 * 2**20, 132, _HOPPER, 0.78, 256, 0.35, 0.30, 0.87, 2e-6, 1.0, 0.21), "hopper"),
    "H200": (Device("H200", 989e12, 4.8e12, 143771 * 2**20, 132, _HOPPER, 0.78, 256, 0.35, 0.30, 0.87, 2e-6, 1.0, 0.21), "hopper"),
    "B200": (Device("B200", 2.25e15, 8e12, 180e9, 148, _HOPPER, 0.73, 256, 0.35, 0.30, 0.87, 2e-6, 1.0, 0.21), "blackwell"),
    "TPU-v4": (Device("TPU-v4", 275e12, 1.2e12, 32 * 2**30, 8, _TPU, 0.85, 256, 0.55, 0.45, 0.85, 2e-6), "tpu"),
    "TPU-v5p": (Device("TPU-v5p", 459e12, 2.765e12, 95 * 2**30, 8, _TPU, 0.85, 256, 0.55, 0.45, 0.85, 2e-6), "tpu"),
}
ALIASES_BEFORE = {"H100": "H100-SXM", "A100": "A100-80GB", "TPUv4": "TPU-v4", "TPUv5p": "TPU-v5p", "v5p": "TPU-v5p", "v4": "TPU-v4"}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_every_device_loads_to_exactly_the_device_it_was(name):
    dev, family = BEFORE[name]
    loaded = CATALOG[name]
    fp8 = ("peak_fp8_flops", "gemm_fp8_max_efficiency")  # added after the move (tests/test_fp8.py)
    for f in dataclasses.fields(Device):
        if f.name in fp8:
            continue
        want = family if f.name == "family" else getattr(dev, f.name)
        assert getattr(loaded, f.name) == want, f.name  # exact: no float tolerance
    assert loaded == dataclasses.replace(dev, family=family, **{k: getattr(loaded, k) for k in fp8})


def test_aliases_still_name_the_same_devices():
    for alias, name in ALIASES_BEFORE.items():
        assert get_device(alias).name == name


def test_every_device_field_has_a_toml_key():
    """A field added to Device without a line in DEVICE_KEYS could not be set from TOML."""
    mapped = {field for field, *_ in DEVICE_KEYS.values()}
    assert {f.name for f in dataclasses.fields(Device)} <= mapped


def test_mi300x_and_b200_ship_with_their_datasheet_figures():
    mi = get_device("MI300X")
    # AMD Instinct MI300X data sheet: 1,307.4 TFLOP/s dense BF16, 5.3 TB/s, 192 GB, 304 CUs
    assert (mi.peak_flops, mi.hbm_bytes_per_s, mi.memory_bytes, mi.sms) == (1307.4e12, 5.3e12, 192e9, 304)
    from simtrain.workload.compute import gemm_time

    # its GEMM efficiency follows the ml-engineering MAMF table: 668.4 TFLOP/s at
    # 10240x15360x8192, times Hopper's typical-to-best ratio 724/769 (isolated: no overhead)
    iso = dataclasses.replace(mi, kernel_overhead_s=0.0)
    m, n, k = 10240, 15360, 8192
    assert 2 * m * n * k / gemm_time(iso, m, n, k) == pytest.approx(668.4e12 * 724 / 769, rel=1e-3)
    b = get_device("B200")
    assert (b.peak_flops, b.hbm_bytes_per_s, b.memory_bytes) == (2.25e15, 8e12, 180e9)  # DGX B200 datasheet
    # GB200 NVL72 datasheet, per rack / 72 GPUs: 360 PF sparse BF16 -> 2.5 PF dense, 720 PF sparse FP8
    # -> 5 PF dense, 13.4 TB HBM3e -> 186 GB, 576 TB/s -> 8 TB/s; the same die (SMs) as B200
    g = get_device("GB200")
    assert (g.peak_flops, g.peak_fp8_flops, g.hbm_bytes_per_s, g.memory_bytes, g.sms) == (2.5e15, 5e15, 8e12, 186e9, b.sms)
    # its GEMM constants from its own MAMF row (ml-engineering: bf16 1,822 of 2,500, fp8 3,615.6
    # of 5,000), scaled by Hopper's typical-to-best ratio 724/769 as B200's (1,745 of 2,250)
    assert g.gemm_max_efficiency == pytest.approx(1822 / 2500 * 724 / 769, abs=1e-3)
    assert b.gemm_max_efficiency == pytest.approx(1745 / 2250 * 724 / 769, abs=1e-3)
    assert g.gemm_fp8_max_efficiency == pytest.approx(g.gemm_max_efficiency * (3615.6 / 5000) / (1822 / 2500), abs=1e-3)


def test_blackwell_topologies_carry_nvlink5_and_their_device():
    from simtrain.hardware.load import load_topology

    # NVLink 5: 1.8 TB/s bidirectional per GPU = 900 GB/s per direction (DGX B200 and GB200 NVL72
    # datasheets), at the catalog's 0.8 efficiency; 400 Gb/s ConnectX-7 per GPU at 0.92, and on
    # Blackwell Ultra systems 800 Gb/s ConnectX-8 (MLPerf v5.1 GB300 system description)
    for name, device, per_node, nic_gbps in (("dgx-b200", "B200", 8, 400), ("gb200-nvl72", "GB200", 72, 400),
                                             ("dgx-b300", "B300", 8, 800), ("gb300-nvl72", "GB300", 72, 800)):
        t = load_topology(name, 144)
        assert t.device.name == device and t.gpus_per_node == per_node
        summary = t.inventory()["links"]
        assert sorted(set(summary["nvlink"][1])) == [pytest.approx(900e9 * 0.8)]
        assert sorted(set(summary["nic"][1])) == [pytest.approx(nic_gbps / 8 * 1e9 * 0.92)]


def test_blackwell_ultra_devices_follow_their_datasheets_and_mamf():
    from simtrain.workload.compute import gemm_time

    b3, g3, b2, g2 = (get_device(n) for n in ("B300", "GB300", "B200", "GB200"))
    # HGX/DGX B300: 2.25 PF dense BF16, 4.5 FP8; MLPerf's "B300-SXM-270GB"; GB300 NVL72 per rack
    # / 72: 2.5 PF dense BF16, 5 FP8; 288 GB HBM3e at 8 TB/s (NVIDIA's Blackwell Ultra blog)
    assert (b3.peak_flops, b3.peak_fp8_flops, b3.memory_bytes, b3.sms) == (2.25e15, 4.5e15, 270e9, 148)
    assert (g3.peak_flops, g3.peak_fp8_flops, g3.memory_bytes, g3.hbm_bytes_per_s) == (2.5e15, 5e15, 288e9, 8e12)
    assert b3.family == g3.family == "blackwell_ultra"
    # B300 from its MAMF rows as B200 from its (ml-engineering: bf16 1,769 of 2,250, fp8 3,353.3
    # of 4,500), times Hopper's typical-to-best 724/769
    assert b3.gemm_max_efficiency == pytest.approx(1769 / 2250 * 724 / 769, abs=1e-3)
    assert b3.gemm_fp8_max_efficiency == pytest.approx(3353.3 / 4500 * 724 / 769, abs=1e-3)
    # Check against a measurement nothing was fitted on: Transformer Engine's GEMM-profiling
    # tutorial on a B300 SXM6 AC (docs/examples/gemm_profiling/gemm_profiling.rst), pre-quantized,
    # the 12 GEMMs of one layer (M 15,872, hidden 4,096, FFN 16,384, QKV 12,288): BF16 13.102 ms,
    # FP8 current scaling 6.812 ms. The model: within 7% (BF16 reads 5.7% fast), 2% (FP8).
    from simtrain.workload import fp8 as FP8
    from tests.test_fp8 import TE_LAYER_GEMMS

    bf16 = sum(gemm_time(b3, *s) for s in TE_LAYER_GEMMS)
    fp8 = sum(gemm_time(FP8.fp8_device(b3, "current"), *s, elem_bytes=1) for s in TE_LAYER_GEMMS)
    assert bf16 == pytest.approx(13.102e-3, rel=0.07) and fp8 == pytest.approx(6.812e-3, rel=0.02)


def _azure_fp8(accelerator: str) -> dict[tuple[int, int, int], float]:
    """TFLOP/s by (m, n, k) of Azure's cuBLASLt FP8 benchmark (tools/published/kernels/gemm_cublaslt_azure.csv)."""
    import csv
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "tools/published/kernels/gemm_cublaslt_azure.csv"
    return {(int(r["m"]), int(r["n"]), int(r["k"])): float(r["tflops"])
            for r in csv.DictReader(path.open()) if r["accelerator"] == accelerator}


LARGE = [(4096, 4096, 4096), (8192, 8192, 8192), (16384, 16384, 16384), (32768, 32768, 32768), (6144, 12288, 12288)]


def test_gb300_gemms_are_gb200s_times_the_measured_cublaslt_ratio():
    # Azure's cuBLASLt FP8 benchmark on both parts (random operands, 10,000 warm-ups: the power-
    # capped steady state), the five shapes from 4096^3 up: GB300 / GB200 = 1.149, 1.142, 1.138,
    # 1.158, 1.133, mean 1.144 (by hand from the files). GB300's constants are GB200's times it,
    # BF16 included (equal per-clock peaks; the ratio is the clock each power cap allows).
    g3, g2 = get_device("GB300"), get_device("GB200")
    gb300, gb200 = _azure_fp8("NVIDIA GB300 288GB"), _azure_fp8("NVIDIA GB200 185GB")
    ratio = sum(gb300[s] / gb200[s] for s in LARGE) / len(LARGE)
    assert ratio == pytest.approx(1.144, abs=1e-3)
    assert g3.gemm_max_efficiency == pytest.approx(g2.gemm_max_efficiency * ratio, abs=1e-3)
    assert g3.gemm_fp8_max_efficiency == pytest.approx(g2.gemm_fp8_max_efficiency * ratio, abs=1e-3)
    # and it stays physical: the best shape (typical x 769/724, Hopper's best-to-typical) below
    # the unthrottled kernel ceiling measured on a GB200 with zero operands at its full 2,062 MHz,
    # 2.08-2.30 of 2.5 PF/s (marin-community/marin mfu30-gemm logbook, M30C-003)
    assert g3.gemm_max_efficiency * 769 / 724 <= 2.30 / 2.5


def test_gb200_bf16_gemms_match_in_training_rates_measured_under_its_power_cap():
    # A check nothing was fitted on: marin-community/marin's GB200 logbook (mfu30-gemm, M30C-003)
    # gives the median in-training rate of five cuBLAS BF16 GEMM shapes of a JAX MoE model under
    # the 1,200 W cap: 1.71, 1.72, 1.59, 1.73, 1.56 PF/s. GB200's MAMF-derived constants read
    # each within 10% (by hand: 1.625, 1.563, 1.660, 1.626, 1.623 PF/s; mean 3% below).
    from simtrain.workload.compute import gemm_time

    d = get_device("GB200")
    for (m, n, k), median in [((65536, 3072, 6144), 1.71), ((65536, 6144, 3072), 1.72), ((3072, 6144, 65536), 1.59),
                              ((65536, 6144, 6144), 1.73), ((65536, 1536, 6144), 1.56)]:
        assert 2 * m * n * k / gemm_time(d, m, n, k) / 1e15 == pytest.approx(median, rel=0.10)


def test_hopper_fp8_gemms_match_azures_h200_steady_state():
    # A check nothing was fitted on: the H100/H200 FP8 constant comes from MAMF's H100 SXM row;
    # Azure measured an H200 SXM (CUDA 12.6) at 1,249-1,366 TFLOP/s on the five large shapes.
    # The model reads 1-8% below each, 4.3% below on average (by hand: 1,156 / 1,249.1 ...).
    from simtrain.workload import fp8 as FP8
    from simtrain.workload.compute import gemm_time

    d = FP8.fp8_device(get_device("H200"), "current")
    measured = _azure_fp8("NVIDIA H200 141GB")
    errors = [2 * m * n * k / gemm_time(d, m, n, k, elem_bytes=1) / 1e12 / measured[(m, n, k)] - 1 for m, n, k in LARGE]
    assert all(-0.08 < e < 0.0 for e in errors)
    assert sum(errors) / len(errors) == pytest.approx(-0.043, abs=0.01)


def test_a_scenario_runs_on_mi300x():
    s = load_scenario("llama3-405b-8k", ["cluster.device=MI300X", "cluster.gpus=64", "parallel.dp=0", "parallel.pp=8",
                                         "parallel.vp=1", 'schedule.name="1f1b"', "training.global_batch=64",
                                         'model.name="llama3-70b"', "parallel.first_stage_layers=-1",
                                         "parallel.last_stage_layers=-1"])
    r = simulate(s)
    assert r.device == "MI300X" and 0 < r.mfu < 1
    # peak memory is judged against 192 GB, the device's capacity
    assert r.extra["memory"]["capacity_gib"] == pytest.approx(192e9 / 2**30, rel=1e-12)


def test_device_table_changes_one_key_and_names_the_change():
    base = make_plan(load_scenario("llama3-405b-8k"))
    plan = make_plan(load_scenario("llama3-405b-8k", ["device.hbm_gbytes_per_s=8000", "device.memory_gib=141"]))
    assert plan.device.hbm_bytes_per_s == 8e12 and plan.device.memory_bytes == 141 * 2**30
    assert dataclasses.replace(plan.device, hbm_bytes_per_s=base.device.hbm_bytes_per_s,
                               memory_bytes=base.device.memory_bytes, name=base.device.name) == base.device
    assert plan.device.name == "H100-SXM with hbm_gbytes_per_s=8000, memory_gib=141"
    named = make_plan(load_scenario("llama3-405b-8k", ["device.name=H100-fast", "device.peak_tflops=1978"]))
    assert named.device.name == "H100-fast" and named.device.peak_flops == 1978e12


def test_doubling_peak_halves_the_time_of_compute_bound_gemms():
    """Closed form: a GEMM's compute time is FLOPs / (peak x efficiencies); with the memory
    roofline far below it, twice the peak halves it (less the fixed kernel overhead)."""
    from simtrain.workload.compute import gemm_time

    base = get_device("H100-SXM")
    from simtrain.hardware.devices import apply_device_table
    from simtrain.scenario.device_keys import device_table

    fast = apply_device_table(base, device_table({"peak_tflops": 1978}))
    t1 = gemm_time(base, 8192, 8192, 8192) - base.kernel_overhead_s
    t2 = gemm_time(fast, 8192, 8192, 8192) - fast.kernel_overhead_s
    assert t2 == pytest.approx(t1 / 2, rel=1e-12)


def test_device_attention_efficiency_replaces_the_measured_curves():
    """[device] attention efficiencies on a GPU with measured curves replace them (family
    ""), so the given value is the one the attention kernel runs at."""
    from simtrain.workload.compute import attention_time

    plan = make_plan(load_scenario("llama3-405b-8k", ["device.attention_fwd_efficiency=0.5"]))
    assert plan.device.attention_fwd_efficiency == 0.5 and plan.device.family == ""
    dev = plan.device
    t = attention_time(dev, 1e15, backward=False, kernel="fa2", seq=8192)
    assert t == pytest.approx(1e15 / (dev.peak_flops * dev.sustained_fraction * 0.5) + dev.kernel_overhead_s, rel=1e-12)


@pytest.mark.parametrize("setting, fragment", [
    ("device.peak_tflop=1200", "unknown key device.peak_tflop = 1200: did you mean 'peak_tflops'?"),
    ("device.memory_efficiency=1.5", "device.memory_efficiency = 1.5: must be in (0, 1]"),
    ("device.peak_tflops=-3", "device.peak_tflops = -3: must be positive"),
    ("device.sms=12.5", "device.sms = 12.5: expected a whole number"),
    ("device.gemm_tiles=[[128,128]]", "expected [tile_m, tile_n, efficiency]"),
    ("device.family=volta", "not an attention family"),
    ("device.aliases=[\"x\"]", "aliases belong in a devices/*.toml file"),
    ("device=3", "expected section.key=value"),
])
def test_bad_device_keys_fail_with_one_line(setting, fragment, capsys):
    assert_one_line_error(["run", "--set", setting], capsys, fragment)


def test_bad_device_files_fail_with_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "devices").mkdir()
    monkeypatch.setenv("SIMTRAIN_HOME", str(tmp_path))
    (tmp_path / "devices" / "broken.toml").write_text("peak_tflops = 100\n")
    assert_one_line_error(["run", "--set", "cluster.device=broken"], capsys, "devices/broken.toml: missing key")
    (tmp_path / "devices" / "broken.toml").write_text("peak_tflops = [\n")
    assert_one_line_error(["run", "--set", "cluster.device=broken"], capsys, "not valid TOML")
    (tmp_path / "devices" / "broken.toml").write_text('peak_teraflops = 100\n')
    assert_one_line_error(["run", "--set", "cluster.device=broken"], capsys, "did you mean 'peak_tflops'")


def test_a_renamed_device_keeps_its_attention_family():
    """Code that knows a device by name (simtrain.workload.compute) finds the family of a
    [device] variant too: the H100's curves still apply to "H100-SXM with ...". """
    from simtrain.hardware.devices import FAMILY

    plan = make_plan(load_scenario("llama3-405b-8k", ["device.hbm_gbytes_per_s=4000"]))
    assert FAMILY.get(plan.device.name) == "hopper"


def test_grand_teton_h100_is_h100_sxm_at_its_published_bandwidth_and_bounded_peak():
    # torchtitan's H100s: 2.4 TB/s HBM2e (the benchmark file) against the SXM part's 3.35,
    # and a compute peak "between SXM and NVL" (989 and 835 TFLOP/s dense BF16): streaming
    # kernels take 3350/2400 as long, a compute-bound GEMM 989/912, all else equal
    from simtrain.workload.compute import gemm_time, memory_time

    sxm, gt = get_device("H100-SXM"), get_device("H100-HBM2e")
    assert gt.name == "H100-SXM-HBM2e" and gt.sms == sxm.sms
    assert 835e12 < gt.peak_flops < 989e12
    big = 1 << 30  # bytes: far above the per-kernel overhead
    ratio = (memory_time(gt, big) - gt.kernel_overhead_s) / (memory_time(sxm, big) - sxm.kernel_overhead_s)
    assert ratio == pytest.approx(3350 / 2400, rel=1e-9)
    g = [gemm_time(d, 8192, 8192, 8192) - d.kernel_overhead_s for d in (gt, sxm)]
    assert g[0] / g[1] == pytest.approx(989 / 912, rel=1e-9)
    # and a whole step on it is slower than on the SXM part, faster than at the NVL's peak
    sets = ['model.name="llama3-8b"', "cluster.gpus=8", "parallel.dp=8", "parallel.tp=1", "parallel.pp=1",
            "training.global_batch=16", "parallel.vp=1", 'schedule.name="1f1b"', "parallel.first_stage_layers=-1",
            "parallel.last_stage_layers=-1"]
    t_sxm = simulate(load_scenario(None, sets)).step_time_s
    t_gt = simulate(load_scenario(None, sets + ['cluster.device="H100-HBM2e"'])).step_time_s
    t_nvl = simulate(load_scenario(None, sets + ['cluster.device="H100-HBM2e"', "device.peak_tflops=835"])).step_time_s
    assert t_sxm < t_gt < t_nvl
