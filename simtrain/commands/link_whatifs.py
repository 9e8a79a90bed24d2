"""`--set cluster.nic_gbps=800`-style link what-ifs for the commands that build a topology
without a scenario (`topology`, `collective`): the same keys as a scenario's [cluster]
section (simtrain.scenario.config.TIER_FIELDS), applied by simtrain.hardware.tiers."""

from __future__ import annotations

import argparse
import math

from simtrain.scenario.config import TIER_FIELDS, ClusterConfig, apply_overrides
from simtrain.scenario.errors import bad

DEFAULT_CLUSTER = ClusterConfig()  # its link what-if fields: "the topology's own value"


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="cluster.KEY=VALUE",
                   help="a link what-if, as in a scenario's [cluster] section (repeatable): "
                   + ", ".join(TIER_FIELDS))


def parse_link_whatifs(items: list[str]) -> dict[str, float]:
    """['cluster.nic_gbps=800'] -> {'nic_gbps': 800.0}, parsed as `run --set` parses them
    (simtrain.scenario.config.apply_overrides); one line naming the fix otherwise."""
    for item in items:  # anything but cluster.KEY=VALUE gets this command's fix, not run's
        key, eq, _ = item.partition("=")
        if not eq or not key.strip().startswith("cluster."):
            raise bad("--set", item, "expects cluster.KEY=VALUE, a link what-if",
                      f"e.g. --set cluster.nic_gbps=800; keys: {', '.join(TIER_FIELDS)}")
    out: dict[str, float] = {}
    for name, v in apply_overrides({}, items).get("cluster", {}).items():
        if name not in TIER_FIELDS:
            raise bad("--set", f"cluster.{name}", "is not a link what-if of this command",
                      f"use one of {', '.join('cluster.' + f for f in TIER_FIELDS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad(f"cluster.{name}", v, "is not a number", "give a number, e.g. 800")
        if not math.isfinite(v):
            raise bad(f"cluster.{name}", v, "is not a finite number", "give a finite number, e.g. 800")
        if float(v) == getattr(DEFAULT_CLUSTER, name):  # 0 (latencies -1): the topology's own value, as in `run`
            continue
        out[name] = float(v)
    return out
