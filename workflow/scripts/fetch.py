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


def fail(log, message: str) -> None:
    """The marked error line, and the log's FAILED line that the workflow's failure summary quotes."""
    line = f"consistent123 fetch: error: {message}"
    print(f"{line}\nFAILED: {line}", file=log, flush=True)
    sys.exit(line)


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
            fail(log, f"{source} not found in the mirror {mirror} (benchmark {sm.wildcards.benchmark})")
        shutil.copyfile(source, tmp)
    else:
        source = entry["url"]
        print(f"downloading {source}", file=log, flush=True)
        try:
            with urllib.request.urlopen(source, timeout=120) as response, open(tmp, "wb") as handle:
                shutil.copyfileobj(response, handle)
        except OSError as exc:  # URLError, timeouts, a refused connection
            fail(log, f"{source} cannot be downloaded ({exc})")
    got = sha256(Path(tmp))
    if got != entry["sha256"]:
        fail(  # atomic_path discards the temporary file
            log,
            f"sha256 mismatch for {source}: expected {entry['sha256']}, got {got} "
            f"(corrupt or changed file; nothing written to {target})",
        )
    print(f"ok {source} sha256 {got}", file=log)
