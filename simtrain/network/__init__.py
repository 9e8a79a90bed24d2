"""Network layer: how bytes move over a topology. The flow network (max-min fair sharing
of directed links), collectives as phases of concurrent flows, the `auto` algorithm
choice and point-to-point transfers, and the nccl-tests-style bench.
May import scenario and hardware; nothing above.
"""
