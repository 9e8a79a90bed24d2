"""simtrain: a discrete-event simulator of distributed LLM training steps.

Data flows one way:
scenario file -> Scenario -> Plan -> simpy engine over the networkx topology
-> flat timeline records -> metrics, report, plots, traces.

So do imports: each folder is a layer that imports only the ones before it (checked by
tests/test_architecture.py): scenario/ (inputs), hardware/ (devices, topologies),
network/ (flows, collectives), schedule/ (pipeline schedules), workload/ (FLOPs, compute
time, memory), engine/ (plan, simpy engine, records), analysis/ (simulate, metrics,
report, compare, validate), explore/ (sweep, search), plots/, commands/ with cli.py.
"""

from simtrain.scenario.errors import SimtrainError

__all__ = ["SimtrainError", "simulate", "load_scenario"]
__version__ = "0.1.0"


def load_scenario(source, overrides=()):
    """Load a scenario from a TOML path or catalog name, applying `section.key=value` overrides."""
    from simtrain.scenario.config import load_scenario as _load

    return _load(source, overrides)


def simulate(scenario):
    """Simulate one training step of `scenario`; returns a `simtrain.analysis.metrics.Result`."""
    from simtrain.analysis.run import simulate as _simulate

    return _simulate(scenario)
