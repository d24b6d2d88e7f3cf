"""Analyse-and-prune time (no fine-tuning): Topiary against Torch-Pruning on the same
architectures at the same ratio (0.5 of channels, L2 magnitude, uniform), in one run; and the params
and MACs each gets. Medians of --repeats runs.

    /root/benchvenv/bin/python bench/prune_bench.py     # exports the models on first use
Writes bench/results/prune.json and prints a Markdown table (for docs/benchmarks.md).
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch_pruning as tp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import archs  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "bench", "results")
MODELS = {"ResNet-18": archs.resnet18, "ResNet-50": archs.resnet50, "EfficientNet-B0": archs.efficientnet_b0}


def torch_pruning(make, ratio, repeats):
    torch.manual_seed(0)
    base = make().eval()
    x = torch.randn(1, 3, 224, 224)
    graph, total, pruned = [], [], None
    for _ in range(repeats):
        m = copy.deepcopy(base)
        t = time.perf_counter()
        tp.DependencyGraph().build_dependency(m, example_inputs=x, verbose=False)
        graph.append(time.perf_counter() - t)
        m = copy.deepcopy(base)
        t = time.perf_counter()
        pruner = tp.pruner.MetaPruner(m, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio, ignored_layers=[m.fc])
        pruner.step()
        total.append(time.perf_counter() - t)
        pruned = m
    macs0, params0 = tp.utils.count_ops_and_params(base, x)
    macs1, params1 = tp.utils.count_ops_and_params(pruned, x)
    return dict(graph=statistics.median(graph), prune=statistics.median(total), params_before=params0, params_after=params1, macs_before=macs0, macs_after=macs1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--bench-binary", default=os.path.join(ROOT, ".build", "release", "topiary-bench"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    results = {}
    for label, make in MODELS.items():
        path = os.path.join(OUT, label.lower().replace("-", "") + ".onnx")
        if not os.path.exists(path):
            torch.manual_seed(0)
            archs.export(make(), path)
        ours = json.loads(subprocess.run([args.bench_binary, "prune", path, str(args.ratio), str(args.repeats)], check=True, capture_output=True, text=True).stdout)
        theirs = torch_pruning(make, args.ratio, args.repeats)
        results[label] = dict(topiary=dict(analyse=statistics.median(ours["analyse"]), prune=statistics.median(ours["prune"]),
                                           params_before=ours["params_before"], params_after=ours["params_after"],
                                           macs_before=ours["macs_before"], macs_after=ours["macs_after"]), torch_pruning=theirs)
    with open(os.path.join(OUT, "prune.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("| model | TP graph | TP graph+prune | Topiary analyse | Topiary analyse+prune | speed-up | TP params after | Topiary params after | TP MACs after | Topiary MACs after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        a, b = r["topiary"], r["torch_pruning"]
        print(f"| {label} | {b['graph'] * 1e3:.0f} ms | {b['prune'] * 1e3:.0f} ms | {a['analyse'] * 1e3:.1f} ms | {a['prune'] * 1e3:.1f} ms | "
              f"{b['prune'] / a['prune']:.1f}x | {b['params_after'] / 1e6:.2f} M of {b['params_before'] / 1e6:.2f} M | "
              f"{a['params_after'] / 1e6:.2f} M of {a['params_before'] / 1e6:.2f} M | {b['macs_after'] / 1e9:.3f} G of {b['macs_before'] / 1e9:.3f} G | "
              f"{a['macs_after'] / 1e9:.3f} G of {a['macs_before'] / 1e9:.3f} G |")


if __name__ == "__main__":
    main()
