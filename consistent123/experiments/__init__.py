"""Measurements built from the method and the evaluation (may import both)."""
