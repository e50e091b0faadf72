"""Draws the ratios of bench/results.json as a PNG: berth (embedded) and,
where it ran, berth in cluster mode (etcd + Garage), each against
Distribution."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
if "rows" not in results:
    # Only the extra measurements ran (--only matching nothing): no
    # comparison to draw, and the chart of the last full run stays.
    sys.exit(0)
rows = results["rows"]
names = [r["workload"].split(" (")[0] for r in rows] + ["peak memory (distribution / berth)"]
ratios = [r["ratio"] for r in rows]
cluster = [r.get("cluster_ratio") or 0 for r in rows]
rss = results["peak_rss_mib"]
ratios.append(rss["distribution"] / rss["berth"] if rss["berth"] else 0)
cluster.append(0)
y = list(range(len(names)))[::-1]
h = 0.4
fig, ax = plt.subplots(figsize=(10, 0.55 * len(names) + 1.4))
emb = ax.barh([v + h / 2 for v in y], ratios, height=h, color="#4a6fa5", hatch="//",
              edgecolor="black", label="berth, embedded (redb + filesystem)")
clu = ax.barh([v - h / 2 for v in y], cluster, height=h, color="#e0a040", hatch="..",
              edgecolor="black", label="berth, cluster mode (etcd + Garage)")
ax.set_yticks(y)
ax.set_yticklabels(names)
ax.axvline(1.0, color="black", linewidth=1)
ax.set_xscale("log")
ax.set_xlabel("berth / Distribution (higher is better; log scale; 1 = equal)")
for bars, values in ((emb, ratios), (clu, cluster)):
    for bar, r in zip(bars, values):
        if r:
            ax.text(bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2,
                    f"{r:.2f}x", va="center", fontsize=8)
ax.legend(loc="lower right", fontsize=8)
# Runs from before the bench drove berth with tokens have no berth_auth.
auth = results.get("berth_auth", "Basic")
ax.set_title(f"berth ({auth} auth) vs CNCF Distribution 2.8 (no auth), same machine, same run")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"wrote {sys.argv[2]}")
