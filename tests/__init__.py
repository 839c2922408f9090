"""The test suite, one folder per kind (``python -m pytest -q`` from the root runs them all):

unit/          fast, one module each
integration/   several modules end to end (reconstruct, preprocess, export, priors, eval, tables)
faults/        fault injection (kills, concurrent writers, full and read-only disks) and its runner
gpu/           CUDA end to end and the GPU seams (``gpu``-marked tests skip without CUDA)
workflow/      Snakemake dry runs, the dataset manifests and the .ci scripts
support/       helpers several test files share; session fixtures are in conftest.py
fixtures/      committed run folders the table tests read
"""
