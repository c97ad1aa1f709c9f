#!/usr/bin/env python3
"""Write a one-layer image holding a static binary as a docker-archive tarball.

    pause_image.py BINARY OUT.tar REPO:TAG

The result is what `docker save` / `podman save` write (manifest.json, the
config JSON, one layer tar), so `ctr -n k8s.io images import OUT.tar` takes it
without any container engine. The binary becomes /pause, the entrypoint, run
as uid 65535. Byte-for-byte reproducible (fixed mtimes and owners).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def build(binary: str, out: str, ref: str) -> None:
    with open(binary, "rb") as f:
        exe = f.read()
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.USTAR_FORMAT) as layer:
        _add(layer, "pause", exe, 0o755)
    layer_bytes = layer_buf.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ppg-mi scripts/cluster/pause_image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_id = hashlib.sha256(config_bytes).hexdigest()
    repo, _, tag = ref.rpartition(":")
    manifest = [{"Config": f"{config_id}.json", "RepoTags": [ref], "Layers": [f"{diff_id}/layer.tar"]}]
    with tarfile.open(out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, f"{config_id}.json", config_bytes)
        _add(tar, f"{diff_id}/layer.tar", layer_bytes)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, "repositories", json.dumps({repo: {tag: diff_id}}).encode())


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    build(*sys.argv[1:])
