"""``transforms.policy`` as before the core package: :mod:`core.policy` re-exported."""

from core.policy import DAY, HOUR, MINUTE, SECOND, Policy, described, option

__all__ = ["DAY", "HOUR", "MINUTE", "SECOND", "Policy", "described", "option"]
