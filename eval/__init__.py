"""Evaluation: metrics of paper section 4.2 / A.2, protocols and the paper tables.

eval imports the method (``consistent123``: renderers, mesh I/O, the run folder) and never the
experiments or commands that use it; the method never imports eval (pyproject.toml
``[tool.importlinter]``).
"""
