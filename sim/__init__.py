"""Simulated subsystems: real release handlers that hold pages in a real registry.

Client-side only (imports ``pageholder.client``, never the server). A *scenario*
(``scenario.py``) lists subsystems with a behaviour and a hold pattern; ``planning.py``
places their holds; ``behaviours.py`` answers release calls; ``fleet.py`` runs a
scenario against a registry. See ``scenario.py`` for the behaviours and patterns.
"""

from __future__ import annotations

from .behaviours import ReleaseCall, Subsystem
from .fleet import SimulatedFleet
from .planning import HoldPlan, plan_holds
from .scenario import (
    BEHAVIOURS,
    PATTERNS,
    Scenario,
    ScenarioError,
    SubsystemSpec,
    block_list,
    parse_spec,
)

__all__ = [
    "BEHAVIOURS",
    "PATTERNS",
    "HoldPlan",
    "ReleaseCall",
    "Scenario",
    "ScenarioError",
    "SimulatedFleet",
    "Subsystem",
    "SubsystemSpec",
    "block_list",
    "parse_spec",
    "plan_holds",
]
