"""Generate the Python modules for every .proto file under proto/ (run from anywhere).

    python proto/generate.py [OUT_DIR]     # default: the repository root

Generated code is committed; tests/test_proto_generated.py fails when it is stale.
Message modules land beside their package (proto/logsvc/v1/log.proto ->
logsvc/v1/log_pb2.py), with typed stubs from mypy-protobuf.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent
REPO = PROTO_DIR.parent
# Files that declare a service get gRPC stubs too.
SERVICE_FILES = ("logsvc/v1/log.proto", "logsvc/v1/peer.proto")


def generate(out_dir: Path) -> list[Path]:
    bin_dir = Path(sys.executable).parent
    protos = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    common = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
    ]
    messages = [p for p in protos if p not in SERVICE_FILES]
    services = [p for p in protos if p in SERVICE_FILES]
    if messages and protoc.main([*common, *messages]) != 0:
        raise SystemExit("protoc failed")
    grpc_args = [f"--grpc_python_out={out_dir}", f"--mypy_grpc_out={out_dir}"]
    if services and protoc.main([*common, *grpc_args, *services]) != 0:
        raise SystemExit("protoc failed")
    return sorted(
        p
        for p in out_dir.rglob("*_pb2*.py*")
        if ".venv" not in p.parts and p.relative_to(out_dir).parts[0] in ("logsvc", "cacheshim")
    )


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO
    for path in generate(out):
        print(path)
