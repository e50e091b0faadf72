"""Draws the berth / Distribution ratios of bench/results.json as a PNG."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
rows = results["rows"]
names = [r["workload"].split(" (")[0] for r in rows] + ["peak memory (distribution / berth)"]
ratios = [r["ratio"] for r in rows]
rss = results["peak_rss_mib"]
ratios.append(rss["distribution"] / rss["berth"] if rss["berth"] else 0)
fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
bars = ax.barh(names[::-1], ratios[::-1], color="#4a6fa5", hatch="//", edgecolor="black")
ax.axvline(1.0, color="black", linewidth=1)
ax.set_xscale("log")
ax.set_xlabel("berth / Distribution (higher is better; log scale; 1 = equal)")
for bar, r in zip(bars, ratios[::-1]):
    ax.text(bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2, f"{r:.2f}x", va="center")
ax.set_title("berth vs CNCF Distribution 2.8, same machine, same run")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"wrote {sys.argv[2]}")
