"""Horizontal bar chart (SVG, no plotting library) of a methods_bench.py result: test top-1 of
every method, Torch-Pruning's in one colour and Topiary's in another, with the MACs each kept.

    python3 bench/methods_chart.py bench/results/methods-full/methods.json docs/methods-fashion-mnist.svg "title"
"""
import json
import sys
from html import escape


def main():
    source, target = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "Fashion-MNIST test top-1 after pruning to half the MACs"
    rows = json.load(open(source))["rows"]
    accs = [r[3] for r in rows]
    lo = max(0.0, (min(accs) - 0.01) // 0.01 * 0.01)
    hi = min(1.0, (max(accs) + 0.01) // 0.01 * 0.01 + 0.01)
    bar_h, gap, left, width, top = 18, 6, 300, 420, 40
    height = top + len(rows) * (bar_h + gap) + 40
    colours = {"unpruned": "#888888", "Torch-Pruning": "#d9822b", "Topiary": "#2b6cb0"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 140}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="22" font-size="14" font-weight="bold">{escape(title)}</text>']
    for k in range(int(round((hi - lo) / 0.01)) + 1):
        v = lo + k * 0.01
        x = left + (v - lo) / (hi - lo) * width
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 30}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle" fill="#555">{v * 100:.0f}%</text>')
    for i, (name, alloc, kept, acc) in enumerate(r[:4] for r in rows):
        y = top + i * (bar_h + gap)
        colour = next((c for k, c in colours.items() if name.startswith(k)), "#2b6cb0")
        label = f"{name} ({alloc})" if alloc else name
        w = max(1.0, (acc - lo) / (hi - lo) * width)
        out.append(f'<text x="{left - 8}" y="{y + bar_h - 5}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + bar_h - 5}">{acc * 100:.2f}%  ({kept:.3f} MACs)</text>')
    out.append("</svg>")
    with open(target, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
