"""The two-stage optimisation: the loop, its per-iteration plan, optimiser, checkpoints and speed switches."""
