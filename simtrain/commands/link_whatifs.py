"""`--set cluster.nic_gbps=800`-style link what-ifs for the commands that build a topology
without a scenario (`topology`, `collective`): the same keys as a scenario's [cluster]
section (simtrain.scenario.config.TIER_FIELDS), applied by simtrain.hardware.tiers."""

from __future__ import annotations

import argparse
import math

from simtrain.scenario.config import TIER_FIELDS
from simtrain.scenario.errors import bad


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="cluster.KEY=VALUE",
                   help="a link what-if, as in a scenario's [cluster] section (repeatable): "
                   + ", ".join(TIER_FIELDS))


def parse_link_whatifs(items: list[str]) -> dict[str, float]:
    """['cluster.nic_gbps=800'] -> {'nic_gbps': 800.0}; one line naming the fix otherwise."""
    out: dict[str, float] = {}
    for item in items:
        key, eq, value = item.partition("=")
        name = key.strip().removeprefix("cluster.")
        if not eq:
            raise bad("--set", item, "expects cluster.KEY=VALUE", "e.g. --set cluster.nic_gbps=800")
        if name not in TIER_FIELDS:
            raise bad("--set", key.strip(), "is not a link what-if of this command",
                      f"use one of {', '.join('cluster.' + f for f in TIER_FIELDS)}")
        try:
            v = float(value)
        except ValueError:
            raise bad(f"cluster.{name}", value, "is not a number", "give a number, e.g. 800") from None
        if not math.isfinite(v):
            raise bad(f"cluster.{name}", value, "is not a finite number", "give a finite number")
        out[name] = v
    return out
