"""Routing, offline: pick winners from logged results, write them into orchestrator.toml, replay policies."""
