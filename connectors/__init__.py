"""Connectors: how the pipelines meet Pub/Sub, files and Beam's local runner."""
