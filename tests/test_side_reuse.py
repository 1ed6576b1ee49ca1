"""The profiles a pipeline loaded are reused by the next pipeline of the process (a chunked
replay runs one per chunk) while the file is unchanged, and loaded again when it changes."""

from __future__ import annotations

import dataclasses
import os

from core.policy import Policy
from schemas import codecs
from schemas.rows import UserProfile
from transforms.side import SideLoader


def _write(path, users):
    codecs.write_records(path, "UserProfile", [
        UserProfile(u, 1_700_000_000_000, "DE", 1980, False) for u in users], "avro")


def test_profiles_are_loaded_once_per_file_content(tmp_path):
    path = tmp_path / "profiles.avro"
    _write(path, ["u1", "u2"])
    policy = dataclasses.replace(Policy(), profiles_path=str(path))
    first = SideLoader(policy).profiles()
    again = SideLoader(policy).profiles()  # a new pipeline's loader, same file
    assert again is first
    assert first.get("u2").country == "DE"
    _write(path, ["u1", "u2", "u3"])
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = SideLoader(policy).profiles()
    assert changed is not first
    assert changed.get("u3") is not None and first.get("u3") is None
