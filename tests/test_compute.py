"""The compute model against measurements and physical bounds."""

import dataclasses

import pytest

from simtrain.hardware.devices import CATALOG
from simtrain.workload.compute import gemm_efficiency, gemm_time, memory_time


def test_large_square_gemm_on_h100_reaches_measured_798_tflops():
    # the benchmark ran one GEMM in isolation: no sustained-load derating
    dev = dataclasses.replace(CATALOG["H100-SXM"], sustained_fraction=1.0)
    n = 8192
    tflops = 2 * n**3 / gemm_time(dev, n, n, n) / 1e12
    assert tflops == pytest.approx(798, rel=0.01)  # measured on an H100 SXM (devices.py)


def test_a100_large_gemm_matches_mamf_table():
    dev = dataclasses.replace(CATALOG["A100-80GB"], sustained_fraction=1.0)  # isolated benchmark
    n = 8192
    assert 2 * n**3 / gemm_time(dev, n, n, n) / 1e12 == pytest.approx(267.9, rel=0.01)


@pytest.mark.parametrize("shape", [(1024, 1024, 1024), (8192, 128, 8192), (64, 8192, 8192), (8192, 8192, 64)])
def test_small_or_skinny_gemms_are_less_efficient(shape):
    dev = CATALOG["H100-SXM"]
    big = gemm_efficiency(dev, 8192, 8192, 8192)
    assert gemm_efficiency(dev, *shape) < big


def test_no_gemm_beats_peak_or_the_memory_roofline():
    dev = CATALOG["H100-SXM"]
    for m, n, k in [(1, 1, 1), (16, 16384, 16384), (8192, 8192, 8192), (333, 777, 4095)]:
        t = gemm_time(dev, m, n, k)
        assert 2 * m * n * k / t <= dev.peak_flops
        assert t >= 2 * (m * k + k * n + m * n) / dev.hbm_bytes_per_s


def test_memory_bound_ops_follow_bandwidth():
    dev = CATALOG["H100-SXM"]
    gb = 1e9
    assert memory_time(dev, 2 * gb, kernels=0) == pytest.approx(2 * memory_time(dev, gb, kernels=0))


def test_attention_kernel_generations():
    from simtrain.hardware.devices import with_attention_kernel
    from simtrain.scenario.errors import SimtrainError

    h100 = CATALOG["H100-SXM"]
    fa2, fa3 = with_attention_kernel(h100, "fa2"), with_attention_kernel(h100, "fa3")
    # FA3 paper, H100 SXM5, head dim 128, 16k forward: FA2 370, FA3 648 TFLOP/s (of 989)
    assert fa3.attention_fwd_efficiency / fa2.attention_fwd_efficiency == pytest.approx(648 / 370, rel=0.1)
    with pytest.raises(SimtrainError, match="attention_kernel"):
        with_attention_kernel(CATALOG["A100-80GB"], "fa3")
