"""Consistent123: single image -> consistent 3D asset, over whole benchmarks and ablations.

    snakemake --cores 2                                   # the CPU demo (config/config.yaml)
    snakemake --profile slurm --configfile config/paper.yaml   # the paper, on a SLURM cluster

image -> preprocess -> reconstruct -> evaluate -> tables (+ `snakemake --report`). Rules in
workflow/rules/ (helpers in common.smk), the jobs' conda environment in workflow/envs/.
"""
from snakemake.utils import min_version

min_version("8.0")


# The demo config is the default. A --configfile replaces it instead of being merged into it
# (Snakemake would otherwise deep-merge the demo's tiny settings into, e.g., paper.yaml).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/reconstruct.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/known_answer.smk"


rule all:
    input:
        tables_done=f"{SWEEP_DIR}/tables.done",
        turntables=report_pages(),
        report_facts=rules.report_facts.output.front_page,
        known_answer=known_answer_outputs(),
    default_target: True


onsuccess:
    finish_sweep("FINISHED")
    print_where_outputs_are()


onerror:
    finish_sweep("FAILED")
    # After --keep-going (profiles/default) let the good cases finish: list every failed job
    # with its own error line. Snakemake still exits non-zero.
    print_failure_summary(log)
