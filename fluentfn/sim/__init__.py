"""Sim mode: the same program in one process on virtual time, every choice from one seed,
so a failing run replays exactly. ``ff.init(mode="sim", seed=N)`` returns a
``Simulation``; see the README's "Deterministic simulation"."""

from ._clock import EPOCH, SimIdle
from ._drive import SimFuture
from ._simulation import LeftTheSimulation, Simulation, run_client, start

__all__ = ["EPOCH", "LeftTheSimulation", "SimFuture", "SimIdle", "Simulation", "run_client", "start"]
