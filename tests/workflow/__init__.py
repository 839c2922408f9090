"""The Snakemake workflow and the CI scripts in .ci/."""
