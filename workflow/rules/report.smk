# All runs -> the paper's tables (Markdown, LaTeX, CSV), and pages for `snakemake --report`.

localrules: tables, turntable_page


rule tables:
    """`consistent123 tables` over every run of the sweep (MLflow, metrics.json as fallback)."""
    input:
        metrics=all_metrics(),
        variants=rules.variants_sheet.output[0],
        parent=rules.mlflow_init.output[0],
        config=rules.method_config.output[0],
    output:
        tables=report(
            directory(f"{RESULTS}/tables/{SWEEP}"),
            patterns=["{name}.csv"],
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
