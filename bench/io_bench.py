"""Load and save speed: Topiary against Python onnx in one run, on a ResNet-18 export and a ~400 MB
model, with a warm plain file read as the ceiling. Medians of --repeats runs.

    /root/benchvenv/bin/python bench/io_bench.py            # exports the models on first use
Writes bench/results/io.json and prints a Markdown table (for docs/benchmarks.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import onnx
import torch
import torch.nn as nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "bench", "results")


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.short(x))


def resnet18(classes=1000):
    """ResNet-18 as torchvision defines it (torchvision itself is not installed here)."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


def big_mlp():
    """About 400 MB of float32 weights: six 4096 x 4096 layers."""
    return nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(4096, 4096), nn.ReLU())])


def export(name, model, shape):
    path = os.path.join(OUT, name + ".onnx")
    if not os.path.exists(path):
        torch.onnx.export(model.eval(), (torch.randn(*shape),), path, dynamo=False, opset_version=17,
                          training=torch.onnx.TrainingMode.PRESERVE, input_names=["input"], output_names=["output"])
    return path


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bench-binary", default=os.path.join(ROOT, ".build", "release", "topiary-bench"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    models = {"ResNet-18": export("resnet18", resnet18(), (1, 3, 224, 224)), "MLP 6x4096^2": export("mlp400", big_mlp(), (1, 4096))}
    results = {}
    for label, path in models.items():
        size = os.path.getsize(path)
        scratch = path + ".out.onnx"
        read = median_time(lambda: open(path, "rb").read(), args.repeats)
        m = onnx.load(path)
        py_load = median_time(lambda: onnx.load(path), args.repeats)
        py_save = median_time(lambda: onnx.save(m, scratch), args.repeats)
        proc = subprocess.run([args.bench_binary, "io", path, scratch, str(args.repeats)], check=True, capture_output=True, text=True)
        ours = json.loads(proc.stdout)
        t_load, t_save = statistics.median(ours["load"]), statistics.median(ours["save"])
        results[label] = dict(bytes=size, file_read=read, onnx_load=py_load, onnx_save=py_save, topiary_load=t_load, topiary_save=t_save)
        os.remove(scratch)
    with open(os.path.join(OUT, "io.json"), "w") as f:
        json.dump(results, f, indent=2)
    mb = lambda b, t: f"{b / t / 1e6:,.0f} MB/s"
    print("| model | size | file read | onnx.load | Topiary load | load ratio | onnx.save | Topiary save | save ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        b = r["bytes"]
        print(f"| {label} | {b / 1e6:,.1f} MB | {mb(b, r['file_read'])} | {r['onnx_load'] * 1e3:.1f} ms ({mb(b, r['onnx_load'])}) | "
              f"{r['topiary_load'] * 1e3:.1f} ms ({mb(b, r['topiary_load'])}) | {r['onnx_load'] / r['topiary_load']:.2f}x | "
              f"{r['onnx_save'] * 1e3:.1f} ms ({mb(b, r['onnx_save'])}) | {r['topiary_save'] * 1e3:.1f} ms ({mb(b, r['topiary_save'])}) | "
              f"{r['onnx_save'] / r['topiary_save']:.2f}x |")


if __name__ == "__main__":
    main()
