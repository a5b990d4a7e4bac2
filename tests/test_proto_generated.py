"""The committed generated code must match what proto/generate.py makes of the .proto files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_generator() -> object:
    spec = importlib.util.spec_from_file_location("proto_generate", REPO / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["proto_generate"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generator = _load_generator()
    fresh = generator.generate(tmp_path)  # type: ignore[attr-defined]
    assert fresh, "the generator produced nothing"
    for path in fresh:
        relative = path.relative_to(tmp_path)
        committed = REPO / relative
        assert committed.exists(), f"{relative} is generated but not committed"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{relative} is stale: run `python proto/generate.py` and commit the result"
        )
    generated_names = {p.relative_to(tmp_path) for p in fresh}
    committed_names = {p.relative_to(REPO) for p in (REPO / "logsvc").rglob("*_pb2*.py*")} | {
        p.relative_to(REPO) for p in (REPO / "cacheshim").rglob("*_pb2*.py*")
    }
    assert committed_names == generated_names, "generated files without a .proto remain"
