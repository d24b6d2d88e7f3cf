"""Topiary's params/MACs/FLOPs beside thop, fvcore and onnx-tool on every fixture.

Needs the bench venv (PyTorch, thop, fvcore, onnx-tool; outside the repo):
    /root/benchvenv/bin/pip install torch thop fvcore onnx-tool
    /root/benchvenv/bin/python bench/cost_compare.py [--topiary .build/release/topiary]
Prints a Markdown table (pasted into docs/cost-model.md).
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "fixtures"))

import torch  # noqa: E402
import make_models as mm  # noqa: E402

ARCH = {
    "small_resnet": mm.SmallResNet, "resnet_dynamic": mm.SmallResNet, "mobilenetv2": mm.MobileNetV2,
    "dense_inception": mm.DenseInception, "mobilenetv3": mm.MobileNetV3, "shufflenetv2": mm.ShuffleNetV2,
    "cnn_opset11": mm.PlainCNN,
}


def quiet(fn, *a, **k):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*a, **k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--topiary", default=os.path.join(ROOT, ".build", "release", "topiary"))
    args = ap.parse_args()
    import onnx_tool
    import thop
    from fvcore.nn import FlopCountAnalysis

    rows = []
    for name, cls in ARCH.items():
        path = os.path.join(ROOT, "fixtures", "models", name + ".onnx")
        r = json.loads(subprocess.run([args.topiary, "report", path, "--json"], check=True, capture_output=True, text=True).stdout)["totals"]
        model = cls().eval()
        x = torch.randn(1, 1, 8, 8)
        thop_macs, thop_params = quiet(thop.profile, model, inputs=(x,), verbose=False)
        fv = FlopCountAnalysis(model, x)
        fv.unsupported_ops_warnings(False)
        fv.uncalled_modules_warnings(False)
        fv_total = quiet(fv.total)
        try:
            m = onnx_tool.Model(path)
            quiet(m.graph.shape_infer, {"input": __import__("numpy").zeros((1, 1, 8, 8), "float32")} if name == "resnet_dynamic" else None)
            quiet(m.graph.profile)
            ot_params, ot_macs = f"{int(m.graph.params):,}", f"{int(sum(m.graph.macs)):,}"
        except Exception as e:  # report the peer's failure rather than hide the row
            ot_params = ot_macs = f"fails ({type(e).__name__})"
        rows.append((name, r["params"], r["macs"], r["flops"], int(thop_params), int(thop_macs), int(fv_total), ot_params, ot_macs))
    print("| fixture | Topiary params | Topiary MACs | Topiary FLOPs | thop params | thop MACs | fvcore \"flops\" | onnx-tool params | onnx-tool MACs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(f"{c:,}" if isinstance(c, int) else str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
