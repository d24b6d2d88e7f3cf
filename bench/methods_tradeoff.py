"""Accuracy against MACs kept (SVG, no plotting library) of a methods_bench.py result: each
method at each MACs level as one point, the mean over its fine-tuning seeds, with a bar from the
lowest to the highest seed; Torch-Pruning's in one colour and Topiary's in another. A dashed line
marks 90 % of the MACs Torch-Pruning's best kept: a Topiary point left of it and at or above
Torch-Pruning's best mean matches it at 10 % fewer MACs.

    python3 bench/methods_tradeoff.py bench/results/methods-full/methods.json docs/methods-tradeoff-resnet.svg "title"
"""
import json
import re
import sys
from html import escape


def points(rows):
    """(name, allocation, [MACs kept], [accuracies]) per method and MACs level; seeds pooled."""
    groups = []
    for name, alloc, kept, acc in (r[:4] for r in rows):
        if name == "unpruned":
            continue
        base = re.sub(r" \(seed \d+\)", "", name)
        for g in groups:
            if g[0] == base and g[1] == alloc and abs(g[2][0] - kept) < 0.02:
                g[2].append(kept)
                g[3].append(acc)
                break
        else:
            groups.append((base, alloc, [kept], [acc]))
    return groups


def main():
    source, target = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "Fashion-MNIST test top-1 against MACs kept"
    rows = json.load(open(source))["rows"]
    groups = points(rows)
    mean = lambda v: sum(v) / len(v)
    tp = [g for g in groups if g[0].startswith("Torch-Pruning")]
    best_tp = max(tp, key=lambda g: (len(g[3]) > 1, mean(g[3])))  # the best with seeds, if any has them
    accs = [a for g in groups for a in g[3]]
    macs = [k for g in groups for k in g[2]]
    y_lo, y_hi = (min(accs) - 0.002), (max(accs) + 0.002)
    x_lo, x_hi = min(macs) - 0.01, max(macs) + 0.01
    left, top, w, h = 60, 40, 560, 360
    X = lambda v: left + (v - x_lo) / (x_hi - x_lo) * w
    Y = lambda v: top + (y_hi - v) / (y_hi - y_lo) * h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + w + 450}" height="{top + h + 50}" font-family="sans-serif" font-size="11">',
           f'<text x="10" y="22" font-size="14" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    step = 0.002
    v = (y_lo // step + 1) * step
    while v < y_hi:
        out.append(f'<line x1="{left}" y1="{Y(v):.1f}" x2="{left + w}" y2="{Y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{Y(v) + 4:.1f}" text-anchor="end" fill="#555">{v * 100:.1f}%</text>')
        v += step
    v = round(x_lo, 2)
    while v <= x_hi:
        if v >= x_lo:
            out.append(f'<text x="{X(v):.1f}" y="{top + h + 16}" text-anchor="middle" fill="#555">{v:.2f}</text>')
        v = round(v + 0.01, 2)
    out.append(f'<text x="{left + w / 2}" y="{top + h + 34}" text-anchor="middle">MACs kept (fraction of the unpruned model)</text>')
    limit = 0.9 * mean(best_tp[2])
    out.append(f'<line x1="{X(limit):.1f}" y1="{top}" x2="{X(limit):.1f}" y2="{top + h}" stroke="#d9822b" stroke-dasharray="4 3"/>')
    out.append(f'<line x1="{left}" y1="{Y(mean(best_tp[3])):.1f}" x2="{left + w}" y2="{Y(mean(best_tp[3])):.1f}" stroke="#d9822b" stroke-dasharray="4 3"/>')
    legend_y = top
    for i, (name, alloc, kept, acc) in enumerate(sorted(groups, key=lambda g: -mean(g[3]))):
        colour = "#d9822b" if name.startswith("Torch-Pruning") else "#2b6cb0"
        x, y = X(mean(kept)), Y(mean(acc))
        if len(acc) > 1:
            out.append(f'<line x1="{x:.1f}" y1="{Y(max(acc)):.1f}" x2="{x:.1f}" y2="{Y(min(acc)):.1f}" stroke="{colour}"/>')
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{4 if len(acc) > 1 else 2.5}" fill="{colour}"/>')
        out.append(f'<text x="{x + 5:.1f}" y="{y - 4:.1f}" fill="{colour}" font-size="9">{i + 1}</text>')
        seeds = f", {len(acc)} seeds" if len(acc) > 1 else ""
        out.append(f'<text x="{left + w + 12}" y="{legend_y + 11 * i + 8}" fill="{colour}" font-size="9">'
                   f'{i + 1}. {escape(name.replace("Torch-Pruning", "TP"))} ({escape(alloc)}): {mean(acc) * 100:.2f}% at {mean(kept):.3f}{seeds}</text>')
    out.append("</svg>")
    with open(target, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
