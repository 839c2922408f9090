# Inputs: verified copies of the benchmark files, the sweep's method config, preprocessing.

localrules: fetch, method_config


TINY_DIR = BASE_CFG.models.tiny_dir


def tiny_models():
    """The tiny random-weight models, built once before the jobs that load them (demo/tests)."""
    return [f"{TINY_DIR}/tiny_models.json"] if TINY_DIR else []


if TINY_DIR:

    rule tiny_models:
        """`consistent123 tiny-models DIR`: every pretrained part at tiny size, random weights."""
        output:
            f"{TINY_DIR}/tiny_models.json",
        log:
            f"{RESULTS}/logs/tiny_models.log",
        benchmark:
            f"{RESULTS}/benchmarks/tiny_models.tsv"
        threads: 1
        resources:
            **rule_resources("preprocess"),
        script:
            "../scripts/tiny_models.py"


rule fetch:
    """Copy one manifest file from the local mirror, or download it from its source, and
    refuse it unless its sha256 matches the manifest."""
    output:
        f"{DATA_DIR}/{{benchmark}}/{{file}}",
    params:
        entry=lambda wc: manifest_entry(wc.benchmark, wc.file),
        mirror=lambda wc: config["benchmarks"][wc.benchmark].get("mirror"),
    log:
        f"{RESULTS}/logs/fetch/{{benchmark}}/{{file}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fetch/{{benchmark}}/{{file}}.tsv"
    retries: 2
    script:
        "../scripts/fetch.py"


def manifest_entry(benchmark, filename):
    """url and sha256 of one file named in a manifest (any role)."""
    sheet = MANIFESTS[benchmark]
    for role in ROLES:
        if role in sheet.columns:
            hit = sheet[sheet[role] == filename]
            if len(hit):
                row = hit.iloc[0]
                return {"url": row["source"] + filename, "sha256": row[f"{role}_sha256"], "file": filename}
    raise WorkflowError(f"{filename} is not listed in the {benchmark} manifest")


rule method_config:
    """The sweep's method settings as one YAML file (`consistent123 --config` reads it)."""
    output:
        f"{SWEEP_DIR}/method.yaml",
    params:
        method=config["method"],
    log:
        f"{SWEEP_DIR}/logs/method_config.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/method_config.tsv"
    script:
        "../scripts/method_config.py"


def preprocess_inputs(wildcards):
    files = config["benchmarks"][wildcards.benchmark].get("files", ["rgba", "depth"])
    inputs = {"image": data_file(wildcards.benchmark, wildcards.case, "rgba"), "config": rules.method_config.output[0],
              "models": tiny_models()}
    if "depth" in files:
        inputs["depth"] = data_file(wildcards.benchmark, wildcards.case, "depth")
    return inputs


rule preprocess:
    """Mask, recentre, depth and caption (the benchmark's published depth and prompt when given)."""
    input:
        unpack(preprocess_inputs),
    output:
        rgba=f"{SWEEP_DIR}/preprocess/{{benchmark}}/{{case}}/rgba.png",
        depth=f"{SWEEP_DIR}/preprocess/{{benchmark}}/{{case}}/depth.png",
        caption=f"{SWEEP_DIR}/preprocess/{{benchmark}}/{{case}}/caption.txt",
        record=f"{SWEEP_DIR}/preprocess/{{benchmark}}/{{case}}/preprocess.json",
    params:
        caption=lambda wc: case_row(wc).get("prompt", "") or None,
    log:
        f"{SWEEP_DIR}/logs/preprocess/{{benchmark}}/{{case}}.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/preprocess/{{benchmark}}/{{case}}.tsv"
    threads: config["resources"]["preprocess"]["cpus"]
    resources:
        **rule_resources("preprocess"),
    script:
        "../scripts/preprocess.py"
