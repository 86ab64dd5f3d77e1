"""Routing, offline: pick winners from logged results, write them into orchestrator.toml, replay policies.

- :mod:`.select`: winners of a run's DEV split per mode, by an objective;
- :mod:`.writeback`: the ``[routing]`` tables written into the config, every other byte kept;
- :mod:`.replay`: a policy judged on the TEST split from logged results;
- :mod:`.router`, :mod:`.learned`, :mod:`.comparators`: a learned per-issue router, fitted on DEV, replayed
  on TEST against the best single candidate, the static winner, a cascade, random routing and the oracle.

The runtime side (following a cascade, or a stored router, on each call) is :mod:`orchestrator.client`.
"""

from __future__ import annotations

from .learned import LearnedRouting, learn_router
from .replay import ReplayReport, cascade_curve, format_replay, parse_policy, replay
from .select import OBJECTIVES, RoutingError, Selection, Selections, select_winners
from .writeback import routing_entry, write_routing

__all__ = [
    "OBJECTIVES",
    "LearnedRouting",
    "ReplayReport",
    "RoutingError",
    "Selection",
    "Selections",
    "cascade_curve",
    "format_replay",
    "learn_router",
    "parse_policy",
    "replay",
    "routing_entry",
    "select_winners",
    "write_routing",
]
