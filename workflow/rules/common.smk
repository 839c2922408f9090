# Parse-time set-up: validate the config and the case sheets, expand the ablation grids into
# variants (deduplicated), and list every (benchmark, case, variant) run once. Every helper
# the rules use lives here (the rule files hold rules only); none reads a run's results.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import Paramspace, validate

from consistent123.config import config_from_dict, get_field
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
TINY_DIR = BASE_CFG.models.tiny_dir
KNOWN_ANSWER = config.get("known_answer")
TABLES_DIR = f"{RESULTS}/tables/{SWEEP}"
SUPPLIED_MESHES = config.get("supplied_meshes", {})
REPORT_HTML = f"{SWEEP_DIR}/report.html"
# The report's front page, which report_facts writes (absolute: `report:` joins a relative path
# to the folder of the file that names it).
FRONT_PAGE = os.path.abspath(f"{SWEEP_DIR}/report/front_page.rst")


# ------------------------------------------------------------------ how jobs run the CLI
# One adapter runs the CLI for every job that needs it (from the job's shell command):
#   PYTHON CLI_ADAPTER --log LOG --threads N -- COMMAND ARGS
# Snakemake's own interpreter, so a job never picks up another install; under --sdm conda the
# job's environment (workflow/envs/consistent123.yaml) provides `python`.
PYTHON = "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable
CLI_ADAPTER = f"{workflow.basedir}/workflow/scripts/_cli.py"
CONDA_ENV = "../envs/consistent123.yaml"


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
                resolved = get_field(config_from_dict(config["method"], [_override(key, value)]), key)
            except (ConfigError, AttributeError) as exc:
                _fail(f"{grid_path}, setting {row['setting']!r}, column {key!r}: {exc}")
            if resolved != get_field(BASE_CFG, key):
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


# ------------------------------------------------------------------ seeds
# Each variant runs once per seed. The seed of the method config keeps the variant's own folder
# (so a one-seed sweep is unchanged); another seed is the variant "<name>+seed<s>" with the
# override train.seed=<s>. Its paper label is the variant's, so the tables average over seeds.
SEEDS = [int(s) for s in config.get("seeds", [0])]  # `--config 'seeds=[0,1]'` hands strings
if len(set(SEEDS)) < len(SEEDS):
    _fail(f"seeds: {SEEDS} repeats a seed")
BASE_SEED = BASE_CFG.train.seed


def seeded(name, seed):
    return name if seed == BASE_SEED else f"{name}+seed{seed}"


VARIANTS = {
    seeded(name, seed): {
        **entry,
        "seed": seed,
        "overrides": entry["overrides"] + ([] if seed == BASE_SEED else [_override("train.seed", seed)]),
    }
    for name, entry in VARIANTS.items()
    for seed in SEEDS
}
RUNS = {(b, c, seeded(v, seed)): None for (b, c, v) in RUNS for seed in SEEDS}


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
    table, setting = sorted(VARIANTS[variant]["tables"].items())[0]  # the same for every seed
    return variant_tag(int(table.removeprefix("table")), setting)


def run_tags(wildcards):
    tables = ",".join(sorted(VARIANTS[wildcards.variant]["tables"]))
    return [f"benchmark={wildcards.benchmark}", f"case={wildcards.case}",
            f"variant={paper_label(wildcards.variant)}", f"variant_dir={wildcards.variant}",
            f"table={tables}", f"sweep={SWEEP}", f"seed={VARIANTS[wildcards.variant]['seed']}"]


def rule_resources(rule_name):
    """Resources of one rule from config; the SLURM profile turns gpu into --gpus."""
    res = dict(config["resources"][rule_name])
    res["cpus_per_task"] = res.pop("cpus")
    if not res["gpu"]:
        res.pop("gpu")  # no GPU request at all (local runs and CPU partitions)
    return res


def all_metrics():
    return [f"{run_dir(b, v, c)}/metrics.json" for (b, c, v) in RUNS]


def supplied_runs():
    """runs.csv of each method whose meshes the user supplied (config supplied_meshes)."""
    return [f"{RESULTS}/supplied/{SWEEP}/{method}/runs.csv" for method in SUPPLIED_MESHES]


def report_pages():
    return [f"{SWEEP_DIR}/report/{b}/{v}/{c}.html" for (b, c, v) in RUNS]


def sets(overrides):
    """`--set KEY=VALUE` per override, as CLI arguments."""
    return [arg for item in overrides for arg in ("--set", item)]


def tiny_models():
    """The tiny random-weight models, built once before the jobs that load them (demo/tests)."""
    return [f"{TINY_DIR}/tiny_models.json"] if TINY_DIR else []


def manifest_entry(benchmark, filename):
    """url and sha256 of one file named in a manifest (any role)."""
    sheet = MANIFESTS[benchmark]
    for role in ROLES:
        if role in sheet.columns:
            hit = sheet[sheet[role] == filename]
            if len(hit):
                row = hit.iloc[0]
                return {"url": f"{row['source']}{filename}", "sha256": row[f"{role}_sha256"], "file": filename}
    raise WorkflowError(f"{filename} is not listed in the {benchmark} manifest")


def preprocess_inputs(wildcards):
    files = config["benchmarks"][wildcards.benchmark].get("files", ["rgba", "depth"])
    inputs = {"image": data_file(wildcards.benchmark, wildcards.case, "rgba"), "config": rules.method_config.output[0],
              "models": tiny_models()}
    if "depth" in files:
        inputs["depth"] = data_file(wildcards.benchmark, wildcards.case, "depth")
    return inputs


def preprocess_options(wildcards, input):
    """`--caption` (the benchmark's published prompt) and `--depth` (its published depth) when given."""
    caption = case_row(wildcards).get("prompt", "")
    options = ["--caption", caption] if caption else []
    return options + (["--depth", input.depth] if "depth" in input.keys() else [])


def gt_mesh_options(wildcards):
    """`--gt-mesh` with the GSO ground-truth mesh of a case; nothing where the mapping is unknown."""
    pattern = config["benchmarks"][wildcards.benchmark].get("gt_mesh_pattern")
    model = case_row(wildcards).get("gt_mesh", "")
    return ["--gt-mesh", pattern.format(model=model)] if pattern and model else []


def known_answer_objects():
    return list(KNOWN_ANSWER["objects"]) if KNOWN_ANSWER else []


def known_answer_dir(obj):
    return f"{SWEEP_DIR}/known_answer/{obj}"


def known_answer_metrics():
    return [f"{known_answer_dir(o)}/metrics.json" for o in known_answer_objects()]


def known_answer_outputs():
    """The known-answer table and one report page per object (an oracle run)."""
    if not known_answer_objects():
        return []
    pages = [f"{SWEEP_DIR}/report/known_answer/{obj}.html" for obj in known_answer_objects()]
    return [f"{SWEEP_DIR}/known_answer/known_answer.md", *pages]


def known_answer_overrides(wildcards):
    """The sweep's tracking store and tiny models, then the object-size settings of the config."""
    return sets([f"tracking.uri={TRACKING_URI}", f"tracking.experiment={EXPERIMENT}",
                 *([f"models.tiny_dir={TINY_DIR}"] if TINY_DIR else []), *KNOWN_ANSWER.get("set", [])])


def report_scope():
    """The sweep's runs, tables and stores, as the report_facts rule hands them to its script."""
    return {
        "sweep": SWEEP,
        "runs": [{"benchmark": b, "case": c, "variant": v, "dir": run_dir(b, v, c)} for (b, c, v) in RUNS]
        + [{"benchmark": "known_answer", "case": o, "variant": "oracle", "dir": f"{known_answer_dir(o)}/run"}
           for o in known_answer_objects()],
        "seeds": SEEDS,
        "tables": list(config["tables"]),
        "tables_dir": TABLES_DIR,
        "runs_dir": f"{SWEEP_DIR}/runs",
        "tracking_uri": TRACKING_URI,
        "experiment": EXPERIMENT,
    }


def report_front_page():
    """The front page report_facts wrote; before it ran, a page saying so (never a run's files)."""
    return FRONT_PAGE if os.path.isfile(FRONT_PAGE) else "../report/no_front_page.rst"


def print_where_outputs_are():
    # MLflow 3.17's UI opens every experiment on its GenAI overview unless the page's address asks
    # for "machine_learning" (its GenAI / Model training switch outranks mlflow.experimentKind).
    import json

    try:
        recorded = json.loads(Path(f"{SWEEP_DIR}/parent_run.json").read_text())
        uri, experiment_id = recorded["tracking_uri"], recorded["experiment_id"]
    except (OSError, ValueError, KeyError):
        uri, experiment_id = TRACKING_URI, "<id>"
    print(
        "\nConsistent123 workflow finished.\n"
        f"  tables:      {RESULTS}/tables/{SWEEP}/\n"
        f"  meshes:      {SWEEP_DIR}/runs/<benchmark>/<variant>/<case>/mesh.glb\n"
        f"  metrics:     {SWEEP_DIR}/runs/<benchmark>/<variant>/<case>/metrics.json\n"
        f"  MLflow:      mlflow ui --backend-store-uri {uri}   (experiment {EXPERIMENT!r})\n"
        f"               then open http://127.0.0.1:5000/#/experiments/{experiment_id}?workflowType=machine_learning"
    )
    # Name only files that exist: the report is written by finish_sweep when the tables are done.
    if Path(REPORT_HTML).is_file():
        print(f"  report:      {REPORT_HTML}\n")
    else:
        print(f"  report:      not written; make it with: snakemake --report {REPORT_HTML}\n")


def finish_sweep(status):
    """End the sweep's MLflow parent run (FINISHED / FAILED) holding the tables and the report.

    When the sweep's tables exist (the whole DAG ran), the report is written first
    (`snakemake --report`, same config files and `--config` values)."""
    from consistent123.tracking.sweep import finish_parent_run

    artifacts = {"tables": sorted(p for p in Path(TABLES_DIR).glob("*") if not p.name.startswith("."))}
    if status == "FINISHED" and Path(f"{SWEEP_DIR}/tables.done").is_file():
        args = [sys.executable, "-m", "snakemake", "--report", REPORT_HTML, "--nolock"]
        for path in workflow.overwrite_configfiles or []:
            args += ["--configfile", str(path)]
        # `--config k=v` too (e.g. another results folder), in the form Snakemake hands its own jobs.
        if workflow.config_settings.config_args:
            args += ["--config", *workflow.config_settings.config_args]
        made = subprocess.run(args, capture_output=True, text=True)
        if made.returncode == 0:
            artifacts["report"] = [REPORT_HTML]
        else:
            why = made.stderr.strip().splitlines()[-1:]
            print(f"report not written ({why}); run: snakemake --report {REPORT_HTML}")
    try:
        if finish_parent_run(f"{SWEEP_DIR}/parent_run.json", status, artifacts):
            print(f"MLflow parent run of sweep {SWEEP!r}: {status}")
    except Exception as exc:  # tracking is a mirror of the files: never turn a result into an error
        print(f"MLflow parent run not updated ({exc.__class__.__name__}: {exc})")


def print_failure_summary(snakemake_log):
    """After --keep-going (profiles/default) the good cases finished: list every failed job with
    its own error line (workflow/scripts/_cli.py). Snakemake still exits non-zero."""
    spec = importlib.util.spec_from_file_location("consistent123_workflow_cli", CLI_ADAPTER)
    adapter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adapter)
    log_file = snakemake_log[0] if isinstance(snakemake_log, (list, tuple)) else snakemake_log
    failures = adapter.failure_summary(log_file)
    print(f"\nConsistent123 workflow: {len(failures)} job(s) failed:", file=sys.stderr)
    for row in failures:
        print(f"  {row}", file=sys.stderr)
