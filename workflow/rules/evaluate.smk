# Metrics of each run: CLIP-similarity, PSNR, LPIPS; Chamfer, IoU and 18-view PSNR/LPIPS on GSO.


def gt_mesh(wildcards):
    """The GSO ground-truth mesh of a case, or None where the mapping is unknown."""
    pattern = config["benchmarks"][wildcards.benchmark].get("gt_mesh_pattern")
    model = case_row(wildcards).get("gt_mesh", "")
    return pattern.format(model=model) if pattern and model else None


rule evaluate:
    input:
        glb=rules.reconstruct.output.glb,
        boundary=rules.reconstruct.output.boundary,
        case=rules.preprocess.output.rgba,
        config=rules.method_config.output[0],
        models=tiny_models(),
    output:
        f"{SWEEP_DIR}/runs/{{benchmark}}/{{variant}}/{{case}}/metrics.json",
    params:
        out=lambda wc, output: str(Path(output[0]).parent),
        case_dir=lambda wc, input: str(Path(input.case).parent),
        gt_mesh=gt_mesh,
        tags=run_tags,  # also in metrics.json, so the tables work from files when MLflow is away
    log:
        f"{SWEEP_DIR}/logs/evaluate/{{benchmark}}/{{variant}}/{{case}}.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/evaluate/{{benchmark}}/{{variant}}/{{case}}.tsv"
    threads: config["resources"]["evaluate"]["cpus"]
    resources:
        **rule_resources("evaluate"),
    script:
        "../scripts/evaluate.py"
