# Inputs: verified copies of the benchmark files, the sweep's method config, preprocessing.

localrules: fetch, method_config


if TINY_DIR:

    rule tiny_models:
        """`consistent123 tiny-models DIR`: every pretrained part at tiny size, random weights
        (a no-op when DIR is already complete)."""
        output:
            f"{TINY_DIR}/tiny_models.json",
        params:
            python=PYTHON,
            cli=CLI_ADAPTER,
            folder=lambda wc, output: str(Path(output[0]).parent),
        log:
            f"{RESULTS}/logs/tiny_models.log",
        benchmark:
            f"{RESULTS}/benchmarks/tiny_models.tsv"
        threads: 1
        resources:
            **rule_resources("preprocess"),
        conda:
            CONDA_ENV
        shell:
            "{params.python:q} {params.cli:q} --log {log:q} --threads {threads} -- tiny-models {params.folder:q}"


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
    conda:
        CONDA_ENV
    script:
        "../scripts/fetch.py"


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
    conda:
        CONDA_ENV
    script:
        "../scripts/method_config.py"


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
        python=PYTHON,
        cli=CLI_ADAPTER,
        out=lambda wc, output: str(Path(output.rgba).parent),
        options=preprocess_options,
    log:
        f"{SWEEP_DIR}/logs/preprocess/{{benchmark}}/{{case}}.log",
    benchmark:
        f"{SWEEP_DIR}/benchmarks/preprocess/{{benchmark}}/{{case}}.tsv"
    threads: config["resources"]["preprocess"]["cpus"]
    resources:
        **rule_resources("preprocess"),
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} {params.cli:q} --log {log:q} --threads {threads} -- "
        "preprocess {input.image:q} --out {params.out:q} --config {input.config:q} {params.options:q}"
