"""The start-up snapshot (compiled.json) must match the YAML sources it was built from."""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path

from netboard.kb import COMPILED, check_kb_dir, compile_kb, source_digest
from netboard.kb.loader import read_kb_files


def test_packaged_snapshot_is_fresh() -> None:
    root = files("netboard.kb")
    data = json.loads((root / COMPILED).read_text("utf-8"))
    assert data["source_sha256"] == source_digest(root), (
        "src/netboard/kb/compiled.json is stale: run `netboard kb compile src/netboard/kb`"
    )
    assert data["documents"] == read_kb_files(root)


def test_stale_snapshot_is_ignored_and_yaml_wins(tmp_path: Path) -> None:
    kb_dir = tmp_path / "kb"
    shutil.copytree(Path(str(files("netboard.kb"))), kb_dir)
    manifest = kb_dir / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("version: ", "version: 9999.", 1))
    kb, problems = check_kb_dir(kb_dir)
    assert not problems
    assert kb is not None
    assert kb.version.startswith("9999.")
    compile_kb(kb_dir)
    kb2, _ = check_kb_dir(kb_dir)
    assert kb2 is not None
    assert kb2.version == kb.version
