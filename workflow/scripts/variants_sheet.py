"""variants.tsv: variant, table, setting (the paper's label), overrides. One row per table use."""

import csv
import io

from consistent123.io import atomic_write_text

sm = snakemake  # noqa: F821
buf = io.StringIO()
writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
writer.writerow(["variant", "table", "setting", "overrides"])
for variant, entry in sm.params.variants.items():
    for table, setting in sorted(entry["tables"].items()):
        writer.writerow([variant, table, setting, " ".join(entry["overrides"])])
atomic_write_text(sm.output[0], buf.getvalue())
