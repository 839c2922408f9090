"""What the report's front page says, from the runs' own records (never from config names).

Writes facts.json and the front page (workflow/report/workflow.rst rendered with those facts),
which the workflow's `report:` directive shows; parsing the workflow never reads a run's files.
"""

import json
from collections import Counter
from pathlib import Path

from jinja2 import Template

from consistent123.io import atomic_write_json, atomic_write_text
from eval.tables import OTHER_BANNER, RANDOM_BANNER


def run_record(folder: Path):
    """(priors kind, {model: source}) a run recorded from the models it loaded; None before it ran."""
    for name in ("metrics.json", "priors.json"):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        record = data.get("priors", {}) if name == "metrics.json" else data
        models = {k: f"{o['source']} ({o['weights']})" for k, o in record.get("models", {}).items()}
        return record.get("priors", "unknown"), models
    return None


def priors_text(kinds: Counter) -> str:
    if not kinds:
        return "No run has recorded the models it loaded yet."
    if set(kinds) == {"real"}:
        return (
            f"Pretrained: all {kinds['real']} runs loaded pretrained weights; the tables compare them with the paper."
        )
    if set(kinds) == {"random"}:
        return (
            f"Random-weight: all {kinds['random']} runs loaded random-weight models (the tiny models "
            "`consistent123 tiny-models` builds). Their numbers exercise the pipeline, not the method: "
            "the tables open with a banner and show no difference to the paper."
        )
    return (
        "Mixed: "
        + ", ".join(f"{n} runs {k}" for k, n in sorted(kinds.items()))
        + ". Only cells whose runs all had pretrained priors are compared with the paper."
    )


MOST_EXPENSIVE = 3  # runs the front page names


def cost_facts(folders) -> dict:
    """Device-hours summed over the runs' ``cost.json`` and the most expensive runs."""
    costs = []
    for folder in folders:
        try:
            costs.append((json.loads((folder / "cost.json").read_text()), folder))
        except (OSError, ValueError):
            continue
    costs.sort(key=lambda item: -item[0]["device_hours"])
    peak = max(costs, key=lambda item: item[0]["peak_memory_mb"], default=None)
    return {
        "n_costed": len(costs),
        "device_hours": sum(c["device_hours"] for c, _ in costs),
        "most_expensive": [
            f"``{f}``: {c['device_hours']:.4f} h ({c['wall_s']:.0f} s on {c['device']})"
            for c, f in costs[:MOST_EXPENSIVE]
        ],
        "peak_memory": f"{peak[0]['peak_memory_mb']:.0f} MiB ({peak[0]['memory_kind']}, ``{peak[1]}``)" if peak else "",
    }


def report_facts(scope: dict) -> dict:
    kinds, models, finished = Counter(), {}, 0
    by_benchmark = {}
    for run in scope["runs"]:
        folder = Path(run["dir"])
        cases, variants = by_benchmark.setdefault(run["benchmark"], (set(), set()))
        cases.add(run["case"])
        variants.add(run["variant"])
        found = run_record(folder)
        if found is None:
            continue
        finished += (folder / "metrics.json").is_file()
        kinds[found[0]] += 1
        for name, source in found[1].items():
            models.setdefault(name, set()).add(source)
    return {
        "sweep": scope["sweep"],
        "n_runs": len(scope["runs"]),
        "finished": finished,
        "scope": "; ".join(
            f"{b}: {len(c)} case(s) ({', '.join(sorted(c)[:6])}{', ...' if len(c) > 6 else ''}) x {len(v)} variant(s)"
            for b, (c, v) in by_benchmark.items()
        ),
        "tables": ", ".join(f"Table {t.removeprefix('table')}" for t in scope["tables"]),
        "banner": RANDOM_BANNER if "random" in kinds else (OTHER_BANNER if set(kinds) - {"real"} else ""),
        "priors_text": priors_text(kinds),
        "models": [
            f"``{name}``: " + "; ".join(f"``{s}``" for s in sorted(sources)) for name, sources in sorted(models.items())
        ],
        "seeds": ", ".join(str(s) for s in scope.get("seeds", [0])),
        "n_seeds": len(scope.get("seeds", [0])),
        "cost": cost_facts(Path(run["dir"]) for run in scope["runs"]),
        "tables_dir": scope["tables_dir"],
        "runs_dir": scope["runs_dir"],
        "tracking_uri": scope["tracking_uri"],
        "experiment": scope["experiment"],
    }


sm = snakemake  # noqa: F821
facts = report_facts(sm.params.scope)
atomic_write_json(sm.output.facts, facts)
template = Template(Path(sm.input.template).read_text(), trim_blocks=True, lstrip_blocks=True)
atomic_write_text(sm.output.front_page, template.render(f=facts))
Path(sm.log[0]).write_text(f"{facts['n_runs']} runs, {facts['finished']} evaluated\n")
