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

__all__ = ["SimtrainError", "simulate", "load_scenario", "sweep", "search", "compare", "timeline", "trace"]
__version__ = "0.1.0"

_API = ("simulate", "load_scenario", "sweep", "search", "compare", "timeline", "trace", "SweepResult", "SearchResult")


def __getattr__(name: str):
    """The API (simtrain.api) is imported on first use, so `import simtrain` stays light."""
    if name in _API:
        from simtrain import api

        return getattr(api, name)
    raise AttributeError(f"module 'simtrain' has no attribute {name!r}")
