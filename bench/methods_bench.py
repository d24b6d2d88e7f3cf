"""Accuracy of pruning methods on Fashion-MNIST (Debian's dataset-fashion-mnist), Topiary's
criteria and allocations beside Torch-Pruning's magnitude and Taylor pruners, on the same trained
model and data, at half the MACs, after the same fine-tuning budget.

    /root/benchvenv/bin/python bench/methods_bench.py [--train-subset N] [--train-epochs E] [--finetune-epochs F]
Full protocol (issue 6): no subset, the base model trained to convergence (--train-epochs 15).
Writes bench/results/methods.json and prints a Markdown table.
"""
import argparse
import copy
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch_pruning as tp

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "fixtures"))
import make_models as mm  # noqa: E402

OUT = os.path.join(ROOT, "bench", "results", os.environ.get("METHODS_OUT", "methods"))
FMNIST = "/usr/share/datasets/fashion-mnist"
TOPIARY = os.path.join(ROOT, ".build", "release", "topiary")


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)


def load(subset, seed=0):
    x = idx(f"{FMNIST}/train-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255
    y = idx(f"{FMNIST}/train-labels-idx1-ubyte.gz").astype(np.int64)
    xt = idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255
    yt = idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    if subset:
        keep = np.random.default_rng(seed).permutation(len(x))[:subset]
        x, y = x[keep], y[keep]
    return x, y, xt, yt


def train(model, x, y, epochs, lr, seed=0):
    torch.manual_seed(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * (len(x) // 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - 63, 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(xs[b]), ys[b]).backward()
            opt.step()
            sched.step()
    model.eval()


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def tp_prune(model, importance, x, y, macs_keep, global_pruning):
    """Torch-Pruning to the MACs target: bisection on its channel ratio."""
    example = torch.randn(1, 1, 28, 28)
    base_macs, _ = tp.utils.count_ops_and_params(model, example)
    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):
        ratio = (lo + hi) / 2
        m = copy.deepcopy(model)
        pruner = tp.pruner.MetaPruner(m, example, importance=importance, pruning_ratio=ratio, global_pruning=global_pruning, ignored_layers=[m.fc])
        if isinstance(importance, tp.importance.TaylorImportance):
            m.zero_grad()
            F.cross_entropy(m(torch.from_numpy(x[:256])), torch.from_numpy(y[:256])).backward()
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(m, example)
        if macs <= macs_keep * base_macs:
            best, hi = (m, macs / base_macs), ratio
        else:
            lo = ratio
    return best


def topiary_totals(path, topiary=TOPIARY):
    """Params, MACs and FLOPs of an ONNX model by Topiary's cost model (docs/cost-model.md), so that
    Torch-Pruning's models and Topiary's are counted by one counter."""
    out = subprocess.run([topiary, "report", path, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["totals"]


def export(module, path):
    torch.onnx.export(copy.deepcopy(module).eval(), (torch.randn(1, 1, 28, 28),), path, dynamo=False, opset_version=17,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=["input"], output_names=["logits"])


def from_onnx(module, path):
    """The PyTorch module with the weights of its own ONNX export (initializers carry the
    state_dict names), so a --reuse run can prune the same base with Torch-Pruning again."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(path).graph
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    for node in graph.node:  # the exporter writes equal tensors once, with Identity copies
        if node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    state = module.state_dict()
    missing = [k for k in state if k not in weights and not k.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit(f"{path}: no initializer for {missing[:3]}")
    module.load_state_dict({k: weights.get(k, v) for k, v in state.items()})
    return module.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-subset", type=int, default=0)
    ap.add_argument("--train-epochs", type=int, default=15)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--macs", type=float, default=0.5)
    ap.add_argument("--arch", default="small_resnet")
    ap.add_argument("--topiary", default=TOPIARY, help="binary to run (a copy keeps a long run independent of rebuilds)")
    ap.add_argument("--configs", help="Topiary runs as criterion:allocation[:distill][:mean][:gradual][:comp][:rec][:feat],... (feat: feature distillation, implies distill) (mean: global ranking normalised by group means; gradual: pruned in rounds during the fine-tuning; comp: least-squares compensation of the layers that lose inputs; rec: layer-by-layer reconstruction after pruning; default: every criterion with global, l2 with each allocation)")
    ap.add_argument("--distill-weight", type=float, default=0.5, help="weight of the distillation term in the fine-tuning loss (pipeline distill_weight)")
    ap.add_argument("--temperature", type=float, default=4, help="distillation temperature (pipeline temperature)")
    ap.add_argument("--feature-weight", type=float, default=1.0, help="weight of feature distillation in configs with :feat (pipeline distill_features)")
    ap.add_argument("--seed", type=int, default=0, help="fine-tuning seed of every method (Torch-Pruning's and the pipelines')")
    ap.add_argument("--tp-configs", help="Torch-Pruning runs as importance:allocation,... (magnitude|taylor : uniform|global); with --reuse the base is read back from its ONNX export")
    ap.add_argument("--reuse", action="store_true", help="keep the base model, data and rows of an earlier run in the same folder; run only --configs and add their rows")
    args = ap.parse_args()

    def save(rows):
        # After every row, so that a run cut short keeps what it measured and --reuse goes on from there.
        path = os.path.join(OUT, "methods.json")
        with open(path + ".tmp", "w") as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=2)
        os.replace(path + ".tmp", path)

    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    base_path = os.path.join(OUT, f"{args.arch}.onnx")
    if args.reuse:
        rows = [tuple(r) for r in json.load(open(os.path.join(OUT, "methods.json")))["rows"]]
        x = y = None
    else:
        x, y, xt, yt = load(args.train_subset)
        np.savez(os.path.join(OUT, "train.npz"), x=x, y=y)
        np.savez(os.path.join(OUT, "test.npz"), x=xt, y=yt)
        arch = {"small_resnet": mm.SmallResNet, "mobilenetv2": mm.MobileNetV2}[args.arch]
        torch.manual_seed(0)
        base = arch()
        t0 = time.time()
        train(base, x, y, args.train_epochs, 0.05)
        base_acc = accuracy(base, xt, yt)
        export(base, base_path)
        print(f"base {args.arch}: test top-1 {base_acc:.4f} after {args.train_epochs} epochs ({time.time() - t0:.0f} s)", flush=True)
        rows = [("unpruned", "", 1.0, base_acc, 1.0, 1.0)]
        save(rows)
    # Torch-Pruning: magnitude and Taylor, uniform and global, fine-tuned in PyTorch.
    tp_runs = [(imp, glob) for imp in ("magnitude", "taylor") for glob in (False, True)]
    if args.tp_configs:
        tp_runs = [(i, a == "global") for i, a in (c.split(":") for c in args.tp_configs.split(","))]
    elif args.reuse:
        tp_runs = []
    if tp_runs and args.reuse:
        data = np.load(os.path.join(OUT, "train.npz")), np.load(os.path.join(OUT, "test.npz"))
        x, y, xt, yt = data[0]["x"], data[0]["y"], data[1]["x"], data[1]["y"]
        base = from_onnx({"small_resnet": mm.SmallResNet, "mobilenetv2": mm.MobileNetV2}[args.arch](), base_path)
    suffix = f" (seed {args.seed})" if args.seed else ""
    for imp_name, glob in tp_runs:
        name, imp = ("magnitude (L2)", tp.importance.MagnitudeImportance(p=2)) if imp_name == "magnitude" else ("taylor", tp.importance.TaylorImportance())
        found = tp_prune(base, imp, x, y, args.macs, glob)
        if found is None:
            continue
        m, tp_kept = found
        train(m, x, y, args.finetune_epochs, 0.01, seed=args.seed)
        # Counted by Topiary's cost model like the Topiary rows; Torch-Pruning's own count (its
        # counter includes more than convolutions and linear layers) is kept beside it.
        pruned_path = os.path.join(OUT, f"tp-{imp_name}-{'global' if glob else 'uniform'}{f'-seed{args.seed}' if args.seed else ''}{f'-macs{args.macs}' if args.macs != 0.5 else ''}.onnx")
        export(m, pruned_path)
        before, after = topiary_totals(base_path, args.topiary), topiary_totals(pruned_path, args.topiary)
        rows.append((f"Torch-Pruning {name}{suffix}", "global" if glob else "uniform", after["macs"] / before["macs"], accuracy(m, xt, yt),
                     after["flops"] / before["flops"], tp_kept))
        save(rows)
        print(rows[-1], flush=True)
    # Topiary: every criterion with global allocation, plus the automatic allocations.
    configs = [(c, "global", False) for c in ("l1", "l2", "bn_scale", "fpgm", "taylor", "hessian", "similarity", "random")]
    configs += [("l2", "uniform", False), ("l2", "hsic", False), ("l2", "search", False)]
    if args.configs is not None:  # "" runs none
        configs = [(p[0], p[1], "distill" in p[2:] or "feat" in p[2:], "mean" in p[2:], "gradual" in p[2:], "comp" in p[2:], "feat" in p[2:], "rec" in p[2:])
                   for p in (c.split(":") for c in args.configs.split(",") if c)]
    configs = [c + (False,) * (8 - len(c)) for c in configs]
    for criterion, allocation, distill, mean, gradual, comp, feat, rec in configs:
        tag = f"{criterion}-{allocation}" + ("-mean" if mean else "") + ("-comp" if comp else "") + ("-rec" if rec else "") + ("-distill" if distill else "") + (f"-feat{args.feature_weight:g}" if feat else "") + ("-gradual" if gradual else "") + (f"-seed{args.seed}" if args.seed else "")
        if args.macs != 0.5:
            tag += f"-macs{args.macs}"
        if distill and args.distill_weight != 0.5:
            tag += f"-kd{args.distill_weight}"
        if distill and args.temperature != 4:
            tag += f"-T{args.temperature:g}"
        pipeline = os.path.join(OUT, f"{tag}.yml")
        prune = f"criterion: {criterion}, target: {{flops: {args.macs}}}, allocation: {allocation}" + (", normalise: mean" if mean else "") + (", compensate: true" if comp else "") + (", reconstruct: true" if rec else "")
        finetune = f"epochs: {args.finetune_epochs}, lr: 0.01, weight_decay: 0.0005" + (f", distill: true, distill_weight: {args.distill_weight}, temperature: {args.temperature:g}" if distill else "") + (f", distill_features: {args.feature_weight:g}" if feat else "")
        # gradual: the same target reached in rounds inside the same fine-tuning epochs and schedule.
        stages = f"  - finetune: {{{finetune}, gradual_prune: {{{prune}}}}}" if gradual else f"  - prune: {{{prune}}}\n  - finetune: {{{finetune}}}"
        with open(pipeline, "w") as f:
            f.write(f"""model: {base_path}
seed: {args.seed}
data: {{train: {OUT}/train.npz, val: {OUT}/test.npz}}
stages:
  - report: {{name: before}}
{stages}
  - evaluate: {{name: test}}
  - report: {{name: after}}
""")
        run = os.path.join(OUT, f"run-{tag}")
        subprocess.run([args.topiary, "run", pipeline, "--out", run], check=True, capture_output=True)
        r = json.load(open(os.path.join(run, "report.json")))
        kept = r["reports"]["after"]["totals"]["macs"] / r["reports"]["before"]["totals"]["macs"]
        flops_kept = r["reports"]["after"]["totals"]["flops"] / r["reports"]["before"]["totals"]["flops"]
        rows.append((f"Topiary {criterion}" + (" + compensation" if comp else "") + (" + reconstruction" if rec else "") + ((f" + distillation ({args.distill_weight}, T {args.temperature:g})" if (args.distill_weight, args.temperature) != (0.5, 4) else " + distillation") if distill else "") + (f" + feature distillation ({args.feature_weight:g})" if feat else "") + (", gradual" if gradual else "") + suffix,
                     allocation + (" (mean-normalised)" if mean else ""), kept,
                     r["evaluations"][-1]["top1"], flops_kept, None))
        save(rows)
        print(rows[-1], flush=True)
    print("\n| method | allocation | MACs kept | FLOPs kept | test top-1 |\n|---|---|---:|---:|---:|")
    for row in rows:
        name, alloc, kept, acc = row[:4]
        flops = f"{row[4]:.3f}" if len(row) > 4 and row[4] is not None else ""
        print(f"| {name} | {alloc} | {kept:.3f} | {flops} | {acc:.4f} |")


if __name__ == "__main__":
    main()
