# The two-stage optimisation, one job per (benchmark, variant, case).

localrules: mlflow_init, variants_sheet


rule mlflow_init:
    """Create the MLflow database/experiment and the sweep's parent run once, before any job
    logs to it (concurrent first use of a fresh SQLite file fails)."""
    output:
        f"{SWEEP_DIR}/parent_run.json",
    params:
        uri=TRACKING_URI,
        experiment=EXPERIMENT,
        sweep=SWEEP,
    log:
        f"{SWEEP_DIR}/logs/mlflow_init.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/mlflow_init.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/mlflow_init.py"


rule variants_sheet:
    """Which variant is which setting of which table, with its overrides (for the tables)."""
    output:
        f"{SWEEP_DIR}/variants.tsv",
    params:
        variants=VARIANTS,
    log:
        f"{SWEEP_DIR}/logs/variants_sheet.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/variants_sheet.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/variants_sheet.py"


rule reconstruct:
    """`consistent123 reconstruct` under the sweep's parent run: resumes from its checkpoints
    when re-run after a kill and logs into the same MLflow run (run.json and checkpoints/ are
    not declared outputs, so Snakemake never deletes them)."""
    input:
        rgba=rules.preprocess.output.rgba,
        depth=rules.preprocess.output.depth,
        caption=rules.preprocess.output.caption,
        config=rules.method_config.output[0],
        parent=rules.mlflow_init.output[0],
        models=tiny_models(),
    output:
        glb=f"{SWEEP_DIR}/runs/{{benchmark}}/{{variant}}/{{case}}/mesh.glb",
        obj=f"{SWEEP_DIR}/runs/{{benchmark}}/{{variant}}/{{case}}/mesh.obj",
        boundary=f"{SWEEP_DIR}/runs/{{benchmark}}/{{variant}}/{{case}}/boundary.json",
        schedule=f"{SWEEP_DIR}/runs/{{benchmark}}/{{variant}}/{{case}}/schedule.csv",
    params:
        python=PYTHON,
        cli=CLI_ADAPTER,
        case_dir=lambda wc, input: str(Path(input.rgba).parent),
        out=lambda wc, output: str(Path(output.glb).parent),
        overrides=lambda wc: sets(VARIANTS[wc.variant]["overrides"]),
        run_name=lambda wc: f"{wc.benchmark}/{wc.case}/{wc.variant}",
        tags=run_tags,
    log:
        f"{SWEEP_DIR}/logs/reconstruct/{{benchmark}}/{{variant}}/{{case}}.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/reconstruct/{{benchmark}}/{{variant}}/{{case}}.tsv"
    threads: config["resources"]["reconstruct"]["cpus"]
    resources:
        **rule_resources("reconstruct"),
    retries: 1
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} {params.cli:q} --log {log:q} --threads {threads} --parent-run {input.parent:q} -- "
        "reconstruct {params.case_dir:q} --out {params.out:q} --config {input.config:q} "
        "--run-name {params.run_name:q} --no-progress {params.overrides:q} --tags {params.tags:q}"
