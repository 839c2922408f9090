"""Put one benchmark file in place, from a local mirror or its source URL, only if its sha256
matches the manifest. A mismatch fails with both checksums and writes nothing."""

import hashlib
import shutil
import sys
import urllib.request
from pathlib import Path

from consistent123.io import atomic_path

sm = snakemake  # noqa: F821
entry, mirror, target = sm.params.entry, sm.params.mirror, Path(sm.output[0])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


with open(sm.log[0], "w") as log, atomic_path(target) as tmp:
    if mirror:
        source = Path(mirror) / entry["file"]
        if not source.is_file():
            sys.exit(f"fetch: {source} not found in the mirror {mirror} (benchmark {sm.wildcards.benchmark})")
        shutil.copyfile(source, tmp)
    else:
        source = entry["url"]
        print(f"downloading {source}", file=log, flush=True)
        with urllib.request.urlopen(source, timeout=120) as response, open(tmp, "wb") as handle:
            shutil.copyfileobj(response, handle)
    got = sha256(Path(tmp))
    if got != entry["sha256"]:
        message = (
            f"fetch: sha256 mismatch for {source}: expected {entry['sha256']}, got {got} "
            f"(corrupt or changed file; nothing written to {target})"
        )
        print(message, file=log, flush=True)
        sys.exit(message)  # atomic_path discards the temporary file
    print(f"ok {source} sha256 {got}", file=log)
