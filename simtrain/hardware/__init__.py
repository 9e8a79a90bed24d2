"""Hardware layer: the machine. Accelerators (peak FLOP/s, HBM, GEMM calibration) and
cluster topologies as graphs with routes: fat tree, explicit graph and TPU torus, one
builder module each, listed in `load.BUILDERS`, plus summaries. May import scenario only.
"""
