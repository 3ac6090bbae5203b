"""The probe's results: the metric as a named record, the per-block rows, the table, JSON, CSV and the plot."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, NamedTuple

from ..io import write_atomic, write_csv, write_json
from .data import ProbeError


class Metric(NamedTuple):
    """What a probe scores: its name in the rows and whether higher is better."""
    name: str
    higher_is_better: bool


METRICS = {"seg": Metric("mIoU", True), "depth": Metric("rmse", False), "track": Metric("J&F", True)}


@dataclass
class ProbeResult:
    task: str
    model: str
    rows: List[dict] = field(default_factory=list)  # per block: block, metrics, probe seconds
    tower_seconds: float = 0.0
    cache_dir: str = ""
    cache_bytes: int = 0

    @property
    def metric(self) -> str:
        return METRICS[self.task].name

    def best(self) -> dict:
        """The best block; among equal scores the shallowest (cheaper, and where the quality appears)."""
        name, higher = METRICS[self.task]
        key = (lambda r: (-round(r[name], 6), r["block"])) if higher else (lambda r: (round(r[name], 6), r["block"]))
        return sorted(self.rows, key=key)[0]


def format_table(result: ProbeResult) -> str:
    keys = [k for k in result.rows[0] if k not in ("block", "probe_seconds")]
    lines = [f"{'block':>5} " + " ".join(f"{k:>9}" for k in keys) + f" {'probe s':>8}"]
    best = result.best()["block"]
    for r in result.rows:
        lines.append(f"{r['block']:>5} " + " ".join(f"{r[k]:>9.3f}" for k in keys) + f" {r['probe_seconds']:>8.2f}"
                     + ("  <- best" if r["block"] == best else ""))
    return "\n".join(lines)


def write_results(results: List[ProbeResult], out_dir: str) -> Dict[str, str]:
    """``probe_TASK.json`` and ``.csv`` (one row per model and block) and ``probe_TASK.png`` (metric against block,
    one line per model); written whole (temporary names, then renamed)."""
    os.makedirs(out_dir, exist_ok=True)
    task = results[0].task
    base = os.path.join(out_dir, f"probe_{task}")
    payload = [dict(asdict(r), best=r.best(), metric=r.metric, higher_is_better=METRICS[r.task].higher_is_better)
               for r in results]
    write_json(base + ".json", payload)
    keys = [k for k in results[0].rows[0] if k != "block"]
    write_csv(base + ".csv", ["model", "block"] + keys,
              [[r.model, row["block"]] + [row[k] for k in keys] for r in results for row in r.rows])
    plot(results, base + ".png")
    return dict(json=base + ".json", csv=base + ".csv", png=base + ".png")


def plot(results: List[ProbeResult], path: str):
    try:
        import matplotlib
    except ImportError:
        raise ProbeError("the plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = results[0].metric
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for r in results:
        xs, ys = [row["block"] for row in r.rows], [row[metric] for row in r.rows]
        line, = ax.plot(xs, ys, marker="o", label=r.model)
        b = r.best()
        ax.scatter([b["block"]], [b[metric]], s=120, facecolors="none", edgecolors=line.get_color(), linewidths=2)
    ax.set_xlabel("block")
    ax.set_ylabel(metric + ("" if METRICS[results[0].task].higher_is_better else " (lower is better)"))
    ax.set_title(f"frozen {results[0].task} probe per block")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
