"""The core package (``core/``) is plain Python: no Beam, no file I/O, nothing of the shell.

Its machines run, and are tested, without a pipeline; the shell (``transforms/``) wires
them into Beam and loads the files they read (:mod:`transforms.side`,
:mod:`transforms.snapshots`). Checked on the source, as tests/test_lint.py checks length.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

# Packages the core must not import: Beam, the shell and the drivers around it, and the
# modules that reach the file system.
FORBIDDEN = ("apache_beam", "transforms", "connectors", "pipelines", "report", "simulator",
             "os", "shutil", "tempfile", "pathlib", "glob", "io", "fastavro", "pyarrow")
# Names of the schemas package that read or write files.
FILE_FUNCTIONS = ("read_records", "read_batches", "write_records", "load_many", "load",
                  "find_input")


def _modules():
    return sorted(p for p in CORE.glob("*.py"))


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, ()
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, tuple(a.name for a in node.names)


def test_the_core_imports_no_beam_no_shell_and_no_file_system():
    bad = []
    for path in _modules():
        for line, module, names in _imports(ast.parse(path.read_text(), str(path))):
            top = module.split(".")[0]
            if top in FORBIDDEN:
                bad.append(f"core/{path.name}:{line} imports {module}")
            if top == "schemas" and set(names) & set(FILE_FUNCTIONS):
                bad.append(f"core/{path.name}:{line} imports {module}: "
                           f"{', '.join(sorted(set(names) & set(FILE_FUNCTIONS)))}")
    assert not bad, "\n".join(bad)


def test_the_core_opens_no_file():
    bad = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("open", "__import__"):
                bad.append(f"core/{path.name}:{node.lineno} calls {node.func.id}()")
    assert not bad, "\n".join(bad)


def test_the_shell_keeps_its_public_names():
    # users and our own checks import these where they always were
    import core.policy
    from schemas.rows import Transfer  # noqa: F401
    from transforms.policy import Policy
    from transforms.safetynet import SafetyNet  # noqa: F401

    assert Policy is core.policy.Policy
