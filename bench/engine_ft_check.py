"""Is the fine-tuning engine a handicap? Torch-Pruning prunes the Fashion-MNIST base (its best
pruner, taylor global, at 0.5 of the MACs); the same pruned model is then fine-tuned twice with the
same budget — in PyTorch (as methods_bench.py does) and in Topiary's engine (exported to ONNX) —
and both are scored on the 10,000 test images.

    METHODS_OUT=methods-full /root/benchvenv/bin/python bench/engine_ft_check.py [--seed S] [--arch A]
Needs a methods_bench.py folder (base model and data) in bench/results/$METHODS_OUT.
"""
import argparse
import copy
import json
import os
import subprocess

import numpy as np
import torch

import methods_bench as mb

ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--arch", default="small_resnet")
ap.add_argument("--importance", default="taylor")
ap.add_argument("--topiary", default=mb.TOPIARY)
args = ap.parse_args()
torch.set_num_threads(2)
out = mb.OUT
tr, te = np.load(os.path.join(out, "train.npz")), np.load(os.path.join(out, "test.npz"))
x, y, xt, yt = tr["x"], tr["y"], te["x"], te["y"]
arch = {"small_resnet": mb.mm.SmallResNet, "mobilenetv2": mb.mm.MobileNetV2}[args.arch]
base = mb.from_onnx(arch(), os.path.join(out, f"{args.arch}.onnx"))
imp = mb.tp.importance.TaylorImportance() if args.importance == "taylor" else mb.tp.importance.MagnitudeImportance(p=2)
pruned, kept = mb.tp_prune(base, imp, x, y, 0.5, True)
path = os.path.join(out, f"tp-{args.importance}-global-pruned.onnx")
torch.onnx.export(copy.deepcopy(pruned).eval(), (torch.randn(1, 1, 28, 28),), path, dynamo=False, opset_version=17,
                  training=torch.onnx.TrainingMode.PRESERVE, input_names=["input"], output_names=["logits"])
torch_model = copy.deepcopy(pruned)
mb.train(torch_model, x, y, 2, 0.01, seed=args.seed)
torch_acc = mb.accuracy(torch_model, xt, yt)
pipeline = os.path.join(out, f"tp-{args.importance}-engine-ft.yml")
with open(pipeline, "w") as f:
    f.write(f"""model: {path}
seed: {args.seed}
data: {{train: {out}/train.npz, val: {out}/test.npz}}
stages:
  - finetune: {{epochs: 2, lr: 0.01, weight_decay: 0.0005}}
  - evaluate: {{name: test}}
""")
run = os.path.join(out, f"run-tp-{args.importance}-engine-ft-seed{args.seed}")
subprocess.run([args.topiary, "run", pipeline, "--out", run], check=True, capture_output=True)
engine_acc = json.load(open(os.path.join(run, "report.json")))["evaluations"][-1]["top1"]
print(json.dumps(dict(arch=args.arch, importance=args.importance, seed=args.seed, macs_kept=kept, pytorch_ft=torch_acc, topiary_ft=engine_acc)), flush=True)
