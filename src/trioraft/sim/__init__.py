"""Simulation: the labrpc-style network over trio memory channels."""

from trioraft.sim.network import Network, SimClientEnd, open_network

__all__ = ["Network", "SimClientEnd", "open_network"]
