# All runs -> the paper's tables (Markdown, LaTeX, CSV, HTML), pages for `snakemake --report`
# with a front page, and the end of the sweep's MLflow parent run.
import subprocess
import sys
from collections import Counter

localrules: tables, turntable_page

TABLES_DIR = f"{RESULTS}/tables/{SWEEP}"
REPORT_HTML = f"{SWEEP_DIR}/report.html"


report: "../report/workflow.rst"


def _run_record(benchmark, variant, case):
    """(priors kind, {model: source}) a run recorded from the models it loaded; None before it ran."""
    folder = Path(run_dir(benchmark, variant, case))
    for name in ("metrics.json", "priors.json"):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        record = data.get("priors", {}) if name == "metrics.json" else data
        models = {k: f"{o['source']} ({o['weights']})" for k, o in record.get("models", {}).items()}
        return record.get("priors", "unknown"), models
    return None


def report_facts():
    """What the report's front page says, from the runs' own records (never from config names)."""
    from eval.tables import OTHER_BANNER, RANDOM_BANNER

    kinds, models, finished = Counter(), {}, 0
    for benchmark, case, variant in RUNS:
        found = _run_record(benchmark, variant, case)
        if found is None:
            continue
        finished += Path(run_dir(benchmark, variant, case), "metrics.json").is_file()
        kinds[found[0]] += 1
        for name, source in found[1].items():
            models.setdefault(name, set()).add(source)
    if not kinds:
        text = "No run has recorded the models it loaded yet."
    elif set(kinds) == {"real"}:
        text = (f"Pretrained: all {kinds['real']} runs loaded pretrained weights; "
                "the tables compare them with the paper.")
    elif set(kinds) == {"random"}:
        text = (f"Random-weight: all {kinds['random']} runs loaded random-weight models (the tiny models "
                "`consistent123 tiny-models` builds). Their numbers exercise the pipeline, not the method: "
                "the tables open with a banner and show no difference to the paper.")
    else:
        text = ("Mixed: " + ", ".join(f"{n} runs {k}" for k, n in sorted(kinds.items()))
                + ". Only cells whose runs all had pretrained priors are compared with the paper.")
    by_benchmark = {}
    for benchmark, case, variant in RUNS:
        by_benchmark.setdefault(benchmark, [set(), set()])
        by_benchmark[benchmark][0].add(case)
        by_benchmark[benchmark][1].add(variant)
    return {
        "n_runs": len(RUNS), "finished": finished,
        "scope": "; ".join(f"{b}: {len(c)} case(s) ({', '.join(sorted(c)[:6])}{', ...' if len(c) > 6 else ''}) "
                           f"x {len(v)} variant(s)" for b, (c, v) in by_benchmark.items()),
        "tables": ", ".join(f"Table {t.removeprefix('table')}" for t in config["tables"]),
        "banner": RANDOM_BANNER if "random" in kinds else (OTHER_BANNER if set(kinds) - {"real"} else ""),
        "priors_text": text,
        "models": [f"``{name}``: " + "; ".join(f"``{s}``" for s in sorted(sources))
                   for name, sources in sorted(models.items())],
        "tables_dir": TABLES_DIR, "runs_dir": f"{SWEEP_DIR}/runs",
        "tracking_uri": TRACKING_URI, "experiment": EXPERIMENT,
    }


# Only the report's front page reads this (workflow/report/workflow.rst); no rule uses it.
config["report_facts"] = report_facts()


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


rule tables:
    """`consistent123 tables` over every run of the sweep (MLflow, metrics.json as fallback)."""
    input:
        metrics=all_metrics(),
        variants=rules.variants_sheet.output[0],
        parent=rules.mlflow_init.output[0],
        config=rules.method_config.output[0],
    output:
        tables=report(
            directory(TABLES_DIR),
            patterns=["{name}.html"],
            caption="../report/tables.rst",
            category="Tables",
        ),
        done=touch(f"{SWEEP_DIR}/tables.done"),
    params:
        runs_root=SWEEP_DIR,
        sweep=SWEEP,
        extra=config.get("tables_args", []),
    log:
        f"{SWEEP_DIR}/logs/tables.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/tables.tsv"
    script:
        "../scripts/tables.py"


rule turntable_page:
    """One HTML page per run with its turntable embedded, for the report."""
    input:
        glb=rules.reconstruct.output.glb,
        metrics=rules.evaluate.output[0],
    output:
        report(
            f"{SWEEP_DIR}/report/{{benchmark}}/{{variant}}/{{case}}.html",
            caption="../report/turntable.rst",
            category="Turntables",
            subcategory="{benchmark} / {variant}",
            labels={"benchmark": "{benchmark}", "variant": "{variant}", "case": "{case}"},
        ),
    log:
        f"{SWEEP_DIR}/logs/turntable_page/{{benchmark}}/{{variant}}/{{case}}.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/turntable_page/{{benchmark}}/{{variant}}/{{case}}.tsv"
    script:
        "../scripts/turntable_page.py"


def report_pages():
    return [f"{SWEEP_DIR}/report/{b}/{v}/{c}.html" for (b, c, v) in RUNS]
