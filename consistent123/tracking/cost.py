"""What a run cost: wall time, device-hours and peak device memory, and MLflow's system metrics.

``RunCost`` wraps one job's training. Device memory is CUDA's peak allocation when the run is on
a GPU, else the process's peak resident set (host RSS); which one is recorded beside the number.
The wall time is the training of the job that finished the run (a job resumed after a kill
counts from its resume: the killed attempt's time is in Snakemake's benchmark file). One run
holds one device, so device-hours = wall hours. The sweep's parent sums the runs
(consistent123.tracking.sweep).
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path

from consistent123.io import atomic_write_json

log = logging.getLogger(__name__)

METRICS = ("cost.wall_s", "cost.device_hours", "cost.peak_memory_mb")


def peak_memory_mb(device) -> tuple[float, str]:
    """(peak MiB, "cuda" | "host_rss") of this process on ``device``."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "host_rss"


def system_metrics_monitor(run_id: str, uri: str, interval_s: float, resumed: bool):
    """MLflow's own monitor (CPU, memory, disk, network, GPU via pynvml) logging to this run,
    or None when turned off or when the library cannot (psutil missing)."""
    if interval_s <= 0:
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=resumed, tracking_uri=uri)
        monitor.start()
        return monitor
    except Exception as exc:  # never stop training for a side measurement
        log.warning("MLflow system metrics not logged: %s", (str(exc).splitlines() or [""])[0][:200])
        return None


class RunCost:
    """Time and memory of one job's training; ``finish`` writes ``cost.json`` and returns the metrics."""

    def __init__(self, cost_file: str | Path, device, run_id: str, uri: str, interval_s: float, resumed: bool):
        self.cost_file = Path(cost_file)
        self.device = device
        self.start = time.perf_counter()
        self.monitor = system_metrics_monitor(run_id, uri, interval_s, resumed)

    def stop_monitor(self) -> None:
        if self.monitor is not None:
            try:
                self.monitor.finish()
            except Exception as exc:
                log.warning("MLflow system metrics monitor did not stop cleanly: %s", exc)
            self.monitor = None

    def finish(self) -> dict[str, float]:
        self.stop_monitor()
        wall = time.perf_counter() - self.start
        peak, kind = peak_memory_mb(self.device)
        record = {
            "wall_s": wall,
            "device_hours": wall / 3600.0,
            "peak_memory_mb": peak,
            "memory_kind": kind,
            "device": str(self.device),
        }
        atomic_write_json(self.cost_file, record)
        return {f"cost.{k}": v for k, v in record.items() if isinstance(v, float)}
