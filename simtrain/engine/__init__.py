"""Engine layer: one training step, simulated. The plan (everything the engine needs,
computed once from the scenario), the simpy engine (`actions.Engine` over the primitives
in `primitives`), the flat timeline records it returns, and the hardware what-ifs.
May import scenario, hardware, network, schedule and workload; nothing above.
"""
