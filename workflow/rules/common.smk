# Parse-time set-up: validate the config and the case sheets, expand the ablation grids into
# variants (deduplicated), and list every (benchmark, case, variant) run once.
import json
from pathlib import Path

import pandas as pd
from snakemake.utils import Paramspace, validate

from consistent123.config import config_from_dict
from consistent123.errors import ConfigError
from eval.tables import variant_tag

RESULTS = config.get("results", "results")
SWEEP = config["sweep"]
SWEEP_DIR = f"{RESULTS}/{SWEEP}"
DATA_DIR = f"{RESULTS}/data"
ROLES = ("rgba", "depth", "normal", "image")


def _fail(message):
    raise WorkflowError(f"config error: {message}")


def _why(exc):
    """The jsonschema detail that snakemake.utils.validate wraps: field and reason."""
    for arg in (*exc.args, exc.__cause__, exc.__context__):
        if hasattr(arg, "message") and hasattr(arg, "absolute_path"):
            where = ".".join(str(p) for p in getattr(arg, "absolute_path", [])) or "(top level)"
            return f"{where}: {arg.message}"
    return str(exc.args[0]) if exc.args else str(exc)


try:
    validate(config, schema="../schemas/config.schema.json")
except WorkflowError as exc:
    _fail(_why(exc))


# ------------------------------------------------------------------ the method's config
try:
    BASE_CFG = config_from_dict(config["method"])
except ConfigError as exc:
    _fail(f"method: {exc}")
TRACKING_URI = BASE_CFG.tracking.uri
EXPERIMENT = BASE_CFG.tracking.experiment


# ------------------------------------------------------------------ case sheets
def load_manifest(benchmark, spec):
    """Read and validate one benchmark's case sheet; returns rows indexed by case."""
    path = Path(spec["manifest"])
    if not path.is_file():
        _fail(f"benchmarks.{benchmark}.manifest: {path} does not exist")
    sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = {"case", "rgba", "rgba_sha256", "source"} - set(sheet.columns)
    if missing:
        _fail(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    for i, row in sheet.iterrows():
        try:
            validate(row.to_dict(), schema="../schemas/cases.schema.json")
        except WorkflowError as exc:
            _fail(f"{path}, line {i + 2} (case {row['case']!r}): {_why(exc)}")
    dupes = sheet["case"][sheet["case"].duplicated()].tolist()
    if dupes:
        _fail(f"{path}: duplicate case name(s) {', '.join(dupes)}")
    for role in spec.get("files", ["rgba", "depth"]):
        empty = sheet["case"][sheet.get(role, pd.Series([""] * len(sheet))) == ""].tolist()
        if empty:
            _fail(f"{path}: benchmarks.{benchmark}.files needs '{role}' but case(s) {', '.join(empty)} have none")
    sheet = sheet.set_index("case", drop=False)
    wanted = spec["cases"]
    if wanted == "all":
        return sheet
    unknown = [c for c in wanted if c not in sheet.index]
    if unknown:
        _fail(f"benchmarks.{benchmark}.cases: {', '.join(unknown)} not in {path}")
    return sheet.loc[list(wanted)]


MANIFESTS = {name: load_manifest(name, spec) for name, spec in config["benchmarks"].items()}


# ------------------------------------------------------------------ variants from the grids
def _override(key, value):
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float):
        value = repr(value)
    return f"{key}={value}"


def _field(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def expand_grid(table, path):
    """(setting, variant name, overrides) per grid row.

    Only the values that differ from this sweep's method config count: a row equal to it is
    the variant "default", so Table 3's "exponential" and Tables 4-6's "default" are one run.
    The other names are Paramspace patterns of the differing columns ("dynamic_schedule~log";
    dots become underscores because Paramspace needs identifier column names).
    """
    grid_path = Path(path)
    if not grid_path.is_file():
        _fail(f"tables.{table}.grid: {grid_path} does not exist")
    grid = pd.read_csv(grid_path, sep="\t")
    if "setting" not in grid.columns or len(grid.columns) < 2:
        _fail(f"{grid_path}: needs a 'setting' column and at least one section.key column")
    if grid["setting"].duplicated().any():
        _fail(f"{grid_path}: duplicate setting names")
    rows = []
    for _, row in grid.iterrows():
        changed = {}
        for key in grid.columns.drop("setting"):
            value = row[key].item() if hasattr(row[key], "item") else row[key]
            try:
                resolved = _field(config_from_dict(config["method"], [_override(key, value)]), key)
            except (ConfigError, AttributeError) as exc:
                _fail(f"{grid_path}, setting {row['setting']!r}, column {key!r}: {exc}")
            if resolved != _field(BASE_CFG, key):
                changed[key] = value
        if changed:
            one = pd.DataFrame([{k.replace(".", "_"): v for k, v in sorted(changed.items())}])
            name = next(iter(Paramspace(one, filename_params="*").instance_patterns))
        else:
            name = "default"
        rows.append((str(row["setting"]), name, [_override(k, v) for k, v in sorted(changed.items())]))
    return rows


VARIANTS = {"default": {"overrides": [], "tables": {}}}  # name -> overrides, {table: setting}
RUNS = {}  # (benchmark, case, variant) -> None, in a stable order, each once
for table, spec in config["tables"].items():
    rows = expand_grid(table, spec["grid"]) if spec.get("grid") else [("default", "default", [])]
    for setting, name, overrides in rows:
        entry = VARIANTS.setdefault(name, {"overrides": overrides, "tables": {}})
        entry["tables"][table] = setting
        for benchmark in spec["benchmarks"]:
            if benchmark not in MANIFESTS:
                _fail(f"tables.{table}.benchmarks: {benchmark!r} is not under benchmarks:")
            for case in MANIFESTS[benchmark].index:
                RUNS.setdefault((benchmark, case, name), None)
VARIANTS = {k: v for k, v in VARIANTS.items() if v["tables"]}


wildcard_constraints:
    benchmark="|".join(MANIFESTS) or "NONE",
    variant="[^/]+",
    case="[A-Za-z0-9][A-Za-z0-9_.-]*",
    file="[A-Za-z0-9][A-Za-z0-9_.-]*",


# ------------------------------------------------------------------ helpers for the rules
def case_row(wildcards):
    return MANIFESTS[wildcards.benchmark].loc[wildcards.case]


def data_file(benchmark, case, role):
    return f"{DATA_DIR}/{benchmark}/{MANIFESTS[benchmark].loc[case, role]}"


def run_dir(benchmark, variant, case):
    return f"{SWEEP_DIR}/runs/{benchmark}/{variant}/{case}"


def paper_label(variant):
    """The paper's name of a variant, in eval's tag scheme ("<ablation>=<setting>")."""
    if variant == "default":
        return "default"
    table, setting = sorted(VARIANTS[variant]["tables"].items())[0]
    return variant_tag(int(table.removeprefix("table")), setting)


def run_tags(wildcards):
    tables = ",".join(sorted(VARIANTS[wildcards.variant]["tables"]))
    return [f"benchmark={wildcards.benchmark}", f"case={wildcards.case}",
            f"variant={paper_label(wildcards.variant)}", f"variant_dir={wildcards.variant}",
            f"table={tables}", f"sweep={SWEEP}"]


def rule_resources(rule_name):
    """Resources of one rule from config; the SLURM profile turns gpu into --gpus."""
    res = dict(config["resources"][rule_name])
    res["cpus_per_task"] = res.pop("cpus")
    if not res["gpu"]:
        res.pop("gpu")  # no GPU request at all (local runs and CPU partitions)
    return res


def all_metrics():
    return [f"{run_dir(b, v, c)}/metrics.json" for (b, c, v) in RUNS]


def print_where_outputs_are():
    print(
        "\nConsistent123 workflow finished.\n"
        f"  tables:      {RESULTS}/tables/{SWEEP}/\n"
        f"  meshes:      {SWEEP_DIR}/runs/<benchmark>/<variant>/<case>/mesh.glb\n"
        f"  metrics:     {SWEEP_DIR}/runs/<benchmark>/<variant>/<case>/metrics.json\n"
        f"  MLflow:      mlflow ui --backend-store-uri {TRACKING_URI}   (experiment {EXPERIMENT!r})\n"
        f"  report:      snakemake --report {SWEEP_DIR}/report.html\n"
    )
