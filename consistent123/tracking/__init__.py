"""MLflow tracking: the store (store.py), one run per case (run.py), the sweep's parent run (sweep.py)."""
