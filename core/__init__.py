"""The core: every keyed step's state machine, the graph they form, the policy, the events
and features, the models' maths and the Beam-free reference. Plain Python: no Beam, no
file I/O (tests/test_core.py checks it). The Beam shell around it is ``transforms``:
the faces that run a machine as a stateful DoFn or over grouped history, the SafetyNet
composite, the daily composites, the model versions' and snapshots' files, the side data's
loading."""
