# Metrics of each run: CLIP-similarity, PSNR, LPIPS; Chamfer, IoU and 18-view PSNR/LPIPS on GSO.


rule evaluate:
    """`consistent123 evaluate`; the run's tags also go into metrics.json, so the tables work
    from files when MLflow is away."""
    input:
        glb=rules.reconstruct.output.glb,
        boundary=rules.reconstruct.output.boundary,
        case=rules.preprocess.output.rgba,
        config=rules.method_config.output[0],
        models=tiny_models(),
    output:
        f"{SWEEP_DIR}/runs/{{benchmark}}/{{variant}}/{{case}}/metrics.json",
    params:
        python=PYTHON,
        cli=CLI_ADAPTER,
        out=lambda wc, output: str(Path(output[0]).parent),
        case_dir=lambda wc, input: str(Path(input.case).parent),
        gt_mesh=gt_mesh_options,
        tags=run_tags,
    log:
        f"{SWEEP_DIR}/logs/evaluate/{{benchmark}}/{{variant}}/{{case}}.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/evaluate/{{benchmark}}/{{variant}}/{{case}}.tsv"
    threads: config["resources"]["evaluate"]["cpus"]
    resources:
        **rule_resources("evaluate"),
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} {params.cli:q} --log {log:q} --threads {threads} -- "
        "evaluate {params.out:q} --case {params.case_dir:q} --config {input.config:q} {params.gt_mesh:q} "
        "--tags {params.tags:q}"


rule evaluate_meshes:
    """`consistent123 evaluate-meshes`: another method's GSO meshes (config supplied_meshes) scored
    with the sweep's alignment and protocol, for Table 2's rows marked 'supplied by the user'."""
    input:
        meshes=lambda wc: SUPPLIED_MESHES[wc.method],
        config=rules.method_config.output[0],
    output:
        f"{RESULTS}/supplied/{SWEEP}/{{method}}/runs.csv",
    params:
        python=PYTHON,
        cli=CLI_ADAPTER,
        out=lambda wc, output: str(Path(output[0]).parent),
        gt_pattern=lambda wc: config["benchmarks"].get("gso", {}).get("gt_mesh_pattern") or "",
    log:
        f"{SWEEP_DIR}/logs/evaluate_meshes/{{method}}.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/evaluate_meshes/{{method}}.tsv"
    threads: config["resources"]["evaluate"]["cpus"]
    resources:
        **rule_resources("evaluate"),
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} {params.cli:q} --log {log:q} --threads {threads} -- "
        "evaluate-meshes {input.meshes:q} --benchmark gso --method {wildcards.method:q} "
        "--gt-pattern {params.gt_pattern:q} --config {input.config:q} --out {params.out:q}"
