"""The runtime: a run's graph, its pure scheduler, the asyncio engine that carries
out the scheduler's actions, tools, node identity, the run's journaling, leases,
speculative calls, events and the run's result.

Nothing is imported here: each module is imported by its own path
(`plait.runtime._engine`), so importing one never pulls in the rest.
"""
