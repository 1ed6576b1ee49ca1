"""The synthetic exchange: a seeded, deterministic generator of replay directories.

``generate(output_dir, users=..., days=..., seed=...)`` writes one; ``publish_replay`` (in
``simulator.publish``) sends one to Pub/Sub in event-time order. See ``simulator/README.md``.
"""

from simulator.exchange import DEFAULT_START_MS, TYPOLOGIES, generate

__all__ = ["DEFAULT_START_MS", "TYPOLOGIES", "generate"]
