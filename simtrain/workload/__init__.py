"""Workload layer: what the model costs. Parameter counts and model FLOPs, the compute-time
model (GEMM tiles, attention kernels, memory-bound roofline), per-layer costs and the
memory estimate. May import scenario, hardware (devices) and schedule; nothing above.
"""
