"""Several modules end to end: reconstruct, preprocess, export, priors, the oracle, evaluation and tables."""
