# The known-answer benchmark: scanned objects reconstructed from their own render through the
# ORACLE prior (`consistent123 known-answer`, config/known_answer.yaml), one job per object,
# then a Table-2-style table. Enabled by a `known_answer:` section of the workflow config.


if KNOWN_ANSWER:

    wildcard_constraints:
        obj="|".join(known_answer_objects()),

    rule known_answer:
        """`consistent123 known-answer`: reference render, oracle reconstruction, metrics (an oracle run)."""
        input:
            mesh=lambda wc: f"{KNOWN_ANSWER['meshes']}/{wc.obj}.ply",
            config=KNOWN_ANSWER["config"],
            parent=rules.mlflow_init.output[0],
            models=tiny_models(),
        output:
            f"{SWEEP_DIR}/known_answer/{{obj}}/metrics.json",
        params:
            python=PYTHON,
            cli=CLI_ADAPTER,
            out=lambda wc, output: str(Path(output[0]).parent),
            up_axis=KNOWN_ANSWER.get("up_axis", "y"),
            overrides=known_answer_overrides,
            run_name=lambda wc: f"known_answer/{wc.obj}/oracle",
            tags=lambda wc: ["variant=oracle", f"sweep={SWEEP}"],
        log:
            f"{SWEEP_DIR}/logs/known_answer/{{obj}}.log",
        benchmark:
            f"{SWEEP_DIR}/benchmarks/known_answer/{{obj}}.tsv"
        threads: config["resources"]["reconstruct"]["cpus"]
        resources:
            **rule_resources("reconstruct"),
        conda:
            CONDA_ENV
        shell:
            "{params.python:q} {params.cli:q} --log {log:q} --threads {threads} --parent-run {input.parent:q} -- "
            "known-answer {input.mesh:q} --out {params.out:q} --up-axis {params.up_axis:q} "
            "--config {input.config:q} --run-name {params.run_name:q} --no-progress {params.overrides:q} "
            "--tags {params.tags:q}"

    rule known_answer_table:
        """Table-2-style table of the oracle runs (labelled as such), beside the paper's row."""
        input:
            [f"{known_answer_dir(o)}/metrics.json" for o in known_answer_objects()],
        output:
            md=f"{SWEEP_DIR}/known_answer/known_answer.md",
            csv=f"{SWEEP_DIR}/known_answer/known_answer.csv",
        log:
            f"{SWEEP_DIR}/logs/known_answer_table.log",
        benchmark:
            f"{SWEEP_DIR}/benchmarks/known_answer_table.tsv"
        conda:
            CONDA_ENV
        script:
            "../scripts/known_answer_table.py"

    rule known_answer_page:
        """The report's page of one known-answer object: the oracle run's mesh in the viewer, its
        turntable, metrics, and the cross-section and top-down images against the truth."""
        input:
            metrics=f"{SWEEP_DIR}/known_answer/{{obj}}/metrics.json",
        output:
            report(
                f"{SWEEP_DIR}/report/known_answer/{{obj}}.html",
                caption="../report/known_answer.rst",
                category="Known answer (oracle prior)",
                labels={"object": "{obj}"},
            ),
        log:
            f"{SWEEP_DIR}/logs/known_answer_page/{{obj}}.log",
        benchmark:
            f"{SWEEP_DIR}/benchmarks/known_answer_page/{{obj}}.tsv"
        conda:
            CONDA_ENV
        script:
            "../scripts/known_answer_page.py"
