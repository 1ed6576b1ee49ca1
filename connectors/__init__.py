"""Connectors: where the graph meets the outside world — Pub/Sub, files, Beam's local runner."""
