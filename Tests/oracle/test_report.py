"""`topiary report`: counts checked against PyTorch's parameter counts and an independent MAC count."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper, shape_inference

import onnxruntime as ort

from conftest import FIXTURES, ZOO, fixture_path, manifest, random_feeds, topiary


def report(path):
    return json.loads(topiary("report", path, "--json").stdout)


def runtime_shapes(path):
    """Every tensor's shape as onnxruntime computes it at batch 1: each node output is made a
    graph output and the model is run (independent of any shape inference)."""
    m = onnx.load(path)
    names = [o for n in m.graph.node for o in n.output if o]
    known = {o.name for o in m.graph.output}
    for o in names:
        if o not in known:
            m.graph.output.append(onnx.ValueInfoProto(name=o))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = random_feeds(sess, batch=1)
    values = sess.run(None, feeds)
    shapes = {o.name: list(v.shape) for o, v in zip(sess.get_outputs(), values)}
    shapes.update({k: list(v.shape) for k, v in feeds.items()})
    for t in m.graph.initializer:
        shapes[t.name] = list(t.dims)
    return m, shapes


def independent_macs(path):
    """Conv, Gemm and MatMul MACs at batch 1 from the shapes onnxruntime computes."""
    m, shapes = runtime_shapes(path)
    macs = 0
    for n in m.graph.node:
        out = int(np.prod(shapes[n.output[0]]))
        if n.op_type == "Conv":
            macs += out * int(np.prod(shapes[n.input[1]][1:]))
        elif n.op_type == "Gemm":
            a = shapes[n.input[0]]
            trans_a = next((x.i for x in n.attribute if x.name == "transA"), 0)
            macs += out * (a[0] if trans_a else a[1])
        elif n.op_type == "MatMul":
            macs += out * shapes[n.input[0]][-1]
    return macs


@pytest.mark.parametrize("name", FIXTURES)
def test_params_equal_pytorch_count(name):
    assert report(fixture_path(name))["totals"]["params"] == manifest()[name]["pytorch_params"]


@pytest.mark.parametrize("name", FIXTURES)
def test_macs_match_independent_count(name):
    r = report(fixture_path(name))
    assert r["totals"]["macs"] == independent_macs(fixture_path(name))
    assert r["unanalysed"] == []
    # Totals are the sum of the per-node rows; FLOPs are at least 2 per MAC.
    for key in ("params", "macs", "flops", "activation_bytes"):
        assert r["totals"][key] == sum(n[key] for n in r["nodes"])
    assert r["totals"]["flops"] >= 2 * r["totals"]["macs"]


def test_dynamic_batch_stays_symbolic():
    r = report(fixture_path("resnet_dynamic"))
    assert r["inputs"] == [{"name": "input", "type": "float[batch,1,8,8]"}]
    assert r["outputs"] == [{"name": "logits", "type": "float[batch,10]"}]
    # At batch 1 the dynamic export costs what the static one does.
    static = report(fixture_path("small_resnet"))
    assert r["totals"]["macs"] == static["totals"]["macs"]


@pytest.mark.parametrize("path", [p for p in ZOO if "resnet50" in p or "vgg19" in p or "squeezenet" in p])
def test_zoo_params_and_macs(path):
    """Weights here are ConstantOfShape outputs and initializers listed as graph inputs."""
    m = shape_inference.infer_shapes(onnx.load(path))
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in list(m.graph.value_info) + list(m.graph.input)}
    consts = {t.name: int(np.prod(t.dims)) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "ConstantOfShape":
            consts[n.output[0]] = int(np.prod(numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == n.input[0]))))
    params = set()
    for n in m.graph.node:
        slots = {"Conv": [1, 2], "BatchNormalization": [1, 2], "Gemm": [1, 2]}.get(n.op_type, [])
        params.update(n.input[s] for s in slots if s < len(n.input) and n.input[s] in consts)
    r = report(path)
    assert r["totals"]["params"] == sum(consts[p] for p in params)
    assert r["totals"]["macs"] == independent_macs(path)
    assert r["unanalysed"] == []


def test_text_and_markdown_renderings():
    path = fixture_path("mobilenetv2")
    text = topiary("report", path, "--per-layer").stdout
    assert "total" in text and "Conv" in text and "float[1,10]" in text
    lines = [l for l in text.splitlines() if l.startswith("Conv ") or l.startswith("Clip ")]
    assert lines, text
    md = topiary("report", path, "--markdown").stdout
    assert md.startswith("# ") and "| Conv |" in md
    both = topiary("report", path, "--json", "--markdown", check=False)
    assert both.returncode != 0


def test_inspect_lists_ops_and_unanalysed(outdir):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Custom", ["y"], ["z"], domain="my.ops")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])], [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)]), outdir / "c.onnx")
    out = topiary("inspect", outdir / "c.onnx").stdout
    assert "x: float[n,3]" in out
    assert "my.ops::Custom" in out and "not analysed: 1 node(s), ops Custom" in out
