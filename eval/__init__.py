"""Evaluation: metrics of paper section 4.2 / A.2, protocols and the paper tables."""
