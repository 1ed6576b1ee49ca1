"""The Beam shell around :mod:`core`: the faces that run a machine as a stateful DoFn or over
grouped history, the SafetyNet composite, the daily composites, the model versions' and
snapshots' files, the side data's loading.

Pickles written before the core package existed (state checkpoints, model snapshots, model
versions) name their classes ``transforms.<module>`` for the modules now in :mod:`core`;
importing such a name gives the core module, so those files still restore.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

_MOVED = frozenset({"actions", "assessments", "capacity", "casefiles", "events", "friction",
                     "graph", "holdout", "labels", "learner", "ledger", "lookalike", "machine",
                     "models", "outreach", "profiles", "pyramid", "reference", "scorer"})


class _MovedToCore(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``transforms.<moved module>`` -> ``core.<module>`` (the same module object)."""

    specs: dict = {}

    def find_spec(self, name, path=None, target=None):
        package, _, module = name.rpartition(".")
        if package == __name__ and module in _MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(f"core.{spec.name.rpartition('.')[2]}")
        self.specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.specs[module.__name__]  # core's own, not the alias's


if not any(isinstance(f, _MovedToCore) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedToCore())  # before any finder of an installed copy
