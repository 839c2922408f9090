"""Write the sweep's `method:` mapping as the YAML that `consistent123 --config` reads."""

import yaml

from consistent123.io import atomic_write_text

sm = snakemake  # noqa: F821
atomic_write_text(sm.output[0], yaml.safe_dump({"method": dict(sm.params.method)}, sort_keys=False))
