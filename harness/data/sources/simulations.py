"""The registry's entry point for the simulated datasets (`sim1`, `sim2`, `sim3`); the code lives in
harness.data.sources.sim, the choices are written down in docs/simulations.md."""

from harness.data.sources.sim.sim1 import SIM1
from harness.data.sources.sim.sim2 import SIM2
from harness.data.sources.sim.sim3 import SIM3

__all__ = ["SIM1", "SIM2", "SIM3"]
