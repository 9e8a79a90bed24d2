"""Analysis layer: what a simulated step means. `run.simulate` (the whole pipeline in one
call), metrics from the timeline records (MFU, HFU, bubble, breakdown), hotspots and the
critical path, the text and JSON report, compare, validate against published runs, traces.
May import every layer below it (scenario ... engine); never explore, plots or commands.
"""
