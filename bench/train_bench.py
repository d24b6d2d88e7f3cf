"""Training and inference throughput: Topiary's engine against PyTorch CPU (training) and
onnxruntime (inference), 2 threads each, same architectures and weights, in one run.

    /root/benchvenv/bin/python bench/train_bench.py
Training: forward + backward + SGD step, batch 64, random data. Inference: batch-64 throughput and
batch-1 latency. Peak RSS of each process. Writes bench/results/train.json, prints Markdown.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "fixtures"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import archs  # noqa: E402
import make_models as mm  # noqa: E402

OUT = os.path.join(ROOT, "bench", "results")


def cases():
    def r18():
        m = archs.ResNet(archs.Basic, [2, 2, 2, 2], classes=10)
        return m
    return [("small_resnet (8×8)", mm.SmallResNet, (1, 8, 8)), ("mobilenetv2 (8×8)", mm.MobileNetV2, (1, 8, 8)), ("ResNet-18 (64×64)", r18, (3, 64, 64))]


def torch_train(model, shape, batch, steps):
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 2):
        t = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:])


def ort_infer(path, shape, batch, steps):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 2
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    name = s.get_inputs()[0].name
    times = []
    for _ in range(steps + 2):
        t = time.perf_counter()
        s.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:])


def peak_rss_kb(cmd):
    """Runs cmd under /usr/bin/time (a fork of Python would inherit Python's peak RSS)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], check=True, capture_output=True, text=True)
    return p.stdout, int(p.stderr.strip().splitlines()[-1])


def ours(binary, mode, path, batch, steps):
    out, rss = peak_rss_kb([binary, mode, path, str(batch), str(steps)])
    return statistics.median(json.loads(out)["seconds"]), rss


def torch_worker(label, steps):
    """Trains one model in this (fresh) process, for its peak memory."""
    torch.set_num_threads(2)
    for name, make, shape in cases():
        if name == label:
            torch.manual_seed(0)
            print(torch_train(make(), shape, 64, steps))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--torch-worker")
    ap.add_argument("--bench-binary", default=os.path.join(ROOT, ".build", "release", "topiary-bench"))
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args.torch_worker, args.steps)
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    results = {}
    for label, make, shape in cases():
        torch.manual_seed(0)
        model = make()
        path = os.path.join(OUT, "train_" + label.split(" ")[0].lower().replace("-", "") + ".onnx")
        torch.onnx.export(model.eval(), (torch.randn(1, *shape),), path, dynamo=False, opset_version=17, training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        # Topiary's runs first, then PyTorch's and onnxruntime's: a batch-64 inference of a small
        # model lasts about a millisecond, and right after a PyTorch step its OpenMP threads are
        # still spinning on both cores. Inference medians over five times the training steps.
        t_train, rss = ours(args.bench_binary, "train", path, 64, args.steps)
        t_b64, _ = ours(args.bench_binary, "infer", path, 64, args.steps * 5)
        t_b1, _ = ours(args.bench_binary, "infer", path, 1, args.steps * 5)
        p_train = torch_train(model, shape, 64, args.steps)
        o_b64 = ort_infer(path, shape, 64, args.steps * 5)
        o_b1 = ort_infer(path, shape, 1, args.steps * 5)
        _, torch_rss = peak_rss_kb([sys.executable, __file__, "--torch-worker", label, "--steps", str(args.steps)])
        results[label] = dict(topiary_train=64 / t_train, torch_train=64 / p_train, topiary_b64=64 / t_b64, ort_b64=64 / o_b64,
                              topiary_b1_ms=t_b1 * 1e3, ort_b1_ms=o_b1 * 1e3, topiary_rss_mb=rss / 1024, torch_rss_mb=torch_rss / 1024)
    with open(os.path.join(OUT, "train.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("| model | Topiary train | PyTorch train | ratio | Topiary b64 infer | onnxruntime b64 | ratio | Topiary b1 | onnxruntime b1 | latency ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        print(f"| {label} | {r['topiary_train']:,.0f}/s | {r['torch_train']:,.0f}/s | {r['topiary_train'] / r['torch_train']:.2f}x | "
              f"{r['topiary_b64']:,.0f}/s | {r['ort_b64']:,.0f}/s | {r['topiary_b64'] / r['ort_b64']:.2f}x | {r['topiary_b1_ms']:.2f} ms | {r['ort_b1_ms']:.2f} ms | {r['topiary_b1_ms'] / r['ort_b1_ms']:.2f}x |")
    print("\n| model | Topiary training peak RSS | PyTorch training peak RSS |\n|---|---:|---:|")
    for label, r in results.items():
        print(f"| {label} | {r['topiary_rss_mb']:.0f} MB | {r['torch_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
