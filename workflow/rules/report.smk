# All runs -> the paper's tables (Markdown, LaTeX, CSV, HTML), pages for `snakemake --report`
# with a front page (report_facts), and the end of the sweep's MLflow parent run (Snakefile).

localrules: tables, turntable_page, report_facts


# The front page report_facts rendered from the runs' own records; a dry run reads none of them.
report: report_front_page()


rule tables:
    """`consistent123 tables` over every run of the sweep (MLflow, metrics.json as fallback)."""
    input:
        metrics=all_metrics(),
        supplied=supplied_runs(),
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
        python=PYTHON,
        cli=CLI_ADAPTER,
        runs_root=lambda wc, input: str(Path(input.parent).parent),  # the sweep's folder
        sweep=SWEEP,
        extra=config.get("tables_args", []),
        supplied=lambda wc, input: [arg for path in input.supplied for arg in ("--supplied", str(Path(path).parent))],
    log:
        f"{SWEEP_DIR}/logs/tables.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/tables.tsv"
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} {params.cli:q} --log {log:q} --threads {threads} -- "
        "tables --config {input.config:q} --results {params.runs_root:q} --sweep {params.sweep:q} "
        "--out {output.tables:q} {params.supplied:q} {params.extra:q}"


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
    conda:
        CONDA_ENV
    script:
        "../scripts/turntable_page.py"


rule report_facts:
    """What the report's front page says, from the runs' own records (priors.json, metrics.json;
    never from config names): facts.json, and the front page rendered from it."""
    input:
        metrics=all_metrics(),
        known_answer=known_answer_metrics(),
        template=workflow.source_path("../report/workflow.rst"),
    output:
        facts=f"{SWEEP_DIR}/report/facts.json",
        front_page=f"{SWEEP_DIR}/report/front_page.rst",
    params:
        scope=report_scope(),
    log:
        f"{SWEEP_DIR}/logs/report_facts.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/report_facts.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/report_facts.py"
