"""Regenerate the gRPC stubs from ``proto/``: ``python -m fluentfn.wire.regen [--check]``.

``--check`` exits non-zero when the committed stubs differ from what ``proto/`` gives
(CI runs it, so stale stubs fail the build); the lines that only stamp the generator's
version are left out of the comparison, so a newer grpcio-tools patch is not a stale stub.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
_PROTO_DIR = _ROOT / "proto"
_OUT_DIR = Path(__file__).resolve().parent / "_gen"
_PROTOS = ["fluentfn/v1/actorhost.proto"]


def _generate(dest: Path) -> dict[str, str]:
    from grpc_tools import protoc  # dev dependency, imported only here

    # protoc finds the mypy plugins on PATH; they sit beside this interpreter.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

    args = [
        "protoc",
        f"-I{_PROTO_DIR}",
        f"--python_out={dest}",
        f"--grpc_python_out={dest}",
        f"--mypy_out={dest}",
        f"--mypy_grpc_out={dest}",
        *(str(_PROTO_DIR / p) for p in _PROTOS),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    files: dict[str, str] = {}
    for path in sorted((dest / "fluentfn" / "v1").glob("*.py*")):
        text = path.read_text()
        # The stubs live in fluentfn/wire/_gen, so make their imports package-relative.
        text = re.sub(r"^from fluentfn\.v1 import (\w+)", r"from . import \1", text, flags=re.M)
        text = re.sub(r"^import fluentfn\.v1\.(\w+)", r"from . import \1", text, flags=re.M)
        text = text.replace("fluentfn.v1.actorhost_pb2.", "actorhost_pb2.")
        files[path.name] = text
    return files


_STAMPS = (  # what names the generator's own version, not proto/: a new grpcio-tools patch changes only these
    re.compile(r"^GRPC_GENERATED_VERSION = .*$", re.M),
    re.compile(r"^# Protobuf Python Version: .*$", re.M),
    re.compile(r"^_runtime_version\.ValidateProtobufRuntimeVersion\(.*?^\)$", re.M | re.S),
)


def _unstamped(text: str) -> str:
    """``text`` without the generator's version stamps (what ``--check`` compares)."""
    for stamp in _STAMPS:
        text = stamp.sub("", text)
    return text


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = _generate(Path(tmp))
    if "--check" in argv:
        stale = [
            n
            for n, t in files.items()
            if not (_OUT_DIR / n).exists() or _unstamped((_OUT_DIR / n).read_text()) != _unstamped(t)
        ]
        if stale:
            print(f"stale generated stubs: {', '.join(stale)}; run python -m fluentfn.wire.regen")
            return 1
        print("generated stubs are up to date")
        return 0
    for name, text in files.items():
        (_OUT_DIR / name).write_text(text)
    (_OUT_DIR / "__init__.py").write_text('"""Generated gRPC stubs (python -m fluentfn.wire.regen)."""\n')
    print(f"wrote {len(files)} files to {_OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
