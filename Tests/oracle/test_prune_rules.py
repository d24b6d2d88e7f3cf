"""One tiny hand-built graph per channel-tying rule: the groups `inspect --groups` reports, and
pruning each graph gives a valid model equal to its masked twin."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import topiary
from test_prune import prune_and_check

RNG = np.random.default_rng(7)


class G:
    """A small graph builder: convs with random weights, BN, activations."""

    def __init__(self, channels=3, size=6):
        self.nodes, self.inits = [], []
        self.input = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}{self.n}"

    def weight(self, shape):
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name))
        return name

    def conv(self, x, cin, cout, k=3, group=1, bias=True):
        out = self.name("conv")
        inputs = [x, self.weight([cout, cin // group, k, k])] + ([self.weight([cout])] if bias else [])
        self.nodes.append(helper.make_node("Conv", inputs, [out], name=out, pads=[k // 2] * 4, group=group))
        return out

    def bn(self, x, c):
        out = self.name("bn")
        params = [self.weight([c]), self.weight([c]), self.weight([c])]
        var = self.name("var")
        self.inits.append(numpy_helper.from_array(RNG.uniform(0.5, 2, c).astype(np.float32), var))
        self.nodes.append(helper.make_node("BatchNormalization", [x, params[0], params[1], params[2], var], [out], name=out))
        return out

    def op(self, op_type, inputs, domain="", **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def const(self, values, dtype=np.int64):
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.array(values, dtype=dtype), name))
        return name

    def save(self, path, output, opsets=(("", 17),)):
        g = helper.make_graph(self.nodes, "rule", [self.input], [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
        m.ir_version = 8
        if all(d == "" for d, _ in opsets):
            inferred = onnx.shape_inference.infer_shapes(m)
            m.graph.output[0].CopyFrom(inferred.graph.output[0])
        onnx.save(m, path)
        return path


def groups(path):
    return json.loads(topiary("inspect", "--groups", "--json", path).stdout)


def group_of(listing, producer):
    return next(g for g in listing["groups"] if any(p.startswith(producer + " ") for p in g["producers"]))


def head(g, x, cin):
    """A final conv to a fixed width, so the rule under test is not next to the graph output."""
    return g.conv(x, cin, 5, k=1)


def test_residual_branches_are_one_group(outdir):
    g = G()
    a = g.conv("x", 3, 8)
    b = g.conv(g.op("Relu", [a]), 8, 8)
    c = g.conv("x", 3, 8, k=1)
    s = g.op("Add", [b, c])
    path = g.save(outdir / "residual.onnx", head(g, s, 8))
    listing = groups(path)
    merged = group_of(listing, b)
    assert {p.split(" ")[0] for p in merged["producers"]} == {b, c}
    assert merged["width"] == 8 and merged["prunable"] == 8
    prune_and_check(path, outdir, "--ratio", "0.5")


def test_depthwise_conv_ties_input_and_output(outdir):
    g = G()
    a = g.bn(g.conv("x", 3, 8, bias=False), 8)
    d = g.conv(g.op("Relu", [a]), 8, 8, group=8)
    path = g.save(outdir / "dw.onnx", head(g, d, 8))
    listing = groups(path)
    grp = group_of(listing, g.nodes[0].name)
    assert any(m.startswith(g.nodes[3].input[1] + ":0") for m in grp["members"])  # depthwise weights follow
    prune_and_check(path, outdir, "--ratio", "0.5")
    pruned = onnx.load(str(outdir / "pruned.onnx"))
    dw = next(n for n in pruned.graph.node if n.name == d)
    assert next(a.i for a in dw.attribute if a.name == "group") == 4


def test_grouped_conv_keeps_groups_equal(outdir):
    g = G()
    a = g.conv("x", 3, 8)
    grouped = g.conv(g.op("Relu", [a]), 8, 8, group=2)
    path = g.save(outdir / "grouped.onnx", head(g, grouped, 8))
    grp = group_of(groups(path), a)
    assert grp["width"] == 4  # position j of both groups goes together
    prune_and_check(path, outdir, "--ratio", "0.5")
    pruned = onnx.load(str(outdir / "pruned.onnx"))
    w = {t.name: list(t.dims) for t in pruned.graph.initializer}
    node = next(n for n in pruned.graph.node if n.name == grouped)
    assert next(x.i for x in node.attribute if x.name == "group") == 2
    assert w[node.input[1]] == [4, 2, 3, 3]


def test_conv_transpose_produces_and_consumes(outdir):
    g = G()
    a = g.conv("x", 3, 6)
    wt = g.weight([6, 4, 2, 2])
    up = g.name("convT")
    g.nodes.append(helper.make_node("ConvTranspose", [a, wt, g.weight([4])], [up], name=up, strides=[2, 2]))
    path = g.save(outdir / "convT.onnx", head(g, up, 4))
    listing = groups(path)
    assert group_of(listing, up)["width"] == 4 and group_of(listing, a)["width"] == 6
    prune_and_check(path, outdir, "--ratio", "0.5")
    w = {t.name: list(t.dims) for t in onnx.load(str(outdir / "pruned.onnx")).graph.initializer}
    assert w[wt] == [3, 2, 2, 2]


def test_concat_feeding_a_conv(outdir):
    g = G()
    a = g.conv("x", 3, 4)
    b = g.conv("x", 3, 6)
    c = g.op("Concat", [a, b], axis=1)
    path = g.save(outdir / "concat.onnx", head(g, c, 10))
    listing = groups(path)
    assert group_of(listing, a)["width"] == 4 and group_of(listing, b)["width"] == 6
    prune_and_check(path, outdir, "--ratio", "0.5")
    w = {t.name: t for t in onnx.load(str(outdir / "pruned.onnx")).graph.initializer}
    last = g.nodes[-1].input[1]
    assert list(w[last].dims)[1] == 2 + 3


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_sizes_follow(opset, outdir):
    g = G()
    a = g.conv("x", 3, 8)
    if opset < 13:
        g.nodes.append(helper.make_node("Split", [a], ["s1", "s2"], name="split", axis=1, split=[3, 5]))
    elif opset < 18:
        g.nodes.append(helper.make_node("Split", [a, g.const([3, 5])], ["s1", "s2"], name="split", axis=1))
    else:
        g.nodes.append(helper.make_node("Split", [a], ["s1", "s2"], name="split", axis=1, num_outputs=2))
    left = 3 if opset < 18 else 4
    p = g.conv("s1", left, left, k=1)
    q = g.conv("s2", 8 - left, 8 - left, k=1)
    c = g.op("Concat", [p, q], axis=1)
    path = g.save(outdir / "split.onnx", head(g, c, 8), opsets=(("", opset),))
    prune_and_check(path, outdir, "--ratio", "0.5")


def test_squeeze_excite_gate_ties_to_features(outdir):
    g = G()
    x = g.op("Relu", [g.conv("x", 3, 8)])
    s = g.op("GlobalAveragePool", [x])
    gate = g.op("Sigmoid", [g.conv(g.op("Relu", [g.conv(s, 8, 2, k=1)]), 2, 8, k=1)])
    y = g.op("Mul", [x, gate])
    path = g.save(outdir / "se.onnx", head(g, y, 8))
    listing = groups(path)
    features = group_of(listing, g.nodes[0].name)
    assert any(p.startswith(g.nodes[5].name) for p in features["producers"])  # the gate's conv
    assert group_of(listing, g.nodes[3].name)["width"] == 2  # the squeeze is its own group
    prune_and_check(path, outdir, "--ratio", "0.5")


def test_flatten_into_linear_removes_blocks_of_features(outdir):
    g = G(size=3)
    a = g.op("Relu", [g.conv("x", 3, 4)])
    f = g.op("Flatten", [a], axis=1)
    fc = g.weight([7, 36])
    out = g.name("gemm")
    g.nodes.append(helper.make_node("Gemm", [f, fc, g.weight([7])], [out], name=out, transB=1))
    path = g.save(outdir / "flatten.onnx", out)
    prune_and_check(path, outdir, "--ratio", "0.5")
    w = {t.name: t for t in onnx.load(str(outdir / "pruned.onnx")).graph.initializer}
    assert list(w[fc].dims) == [7, 18]


def test_channel_shuffle(outdir):
    g = G()
    a = g.conv("x", 3, 8)
    r = g.op("Reshape", [a, g.const([1, 2, 4, 6, 6])])
    t = g.op("Transpose", [r], perm=[0, 2, 1, 3, 4])
    s = g.op("Reshape", [t, g.const([1, 8, 6, 6])])
    path = g.save(outdir / "shuffle.onnx", head(g, s, 8))
    listing = groups(path)
    grp = group_of(listing, a)
    assert grp["width"] == 4  # column j of both halves goes together
    prune_and_check(path, outdir, "--ratio", "0.5")


def test_unknown_op_is_a_barrier(outdir):
    g = G()
    a = g.conv("x", 3, 8)
    b = g.op("Mystery", [a], domain="vendor")
    path = g.save(outdir / "unknown.onnx", head(g, b, 8), opsets=(("", 17), ("vendor", 1)))
    listing = groups(path)
    grp = group_of(listing, a)
    assert grp["prunable"] == 0 and "Mystery" in grp["pinned"][0]
    assert {"node": b, "op": "Mystery", "reason": "custom domain 'vendor'"} in listing["barriers"]


def test_graph_output_is_a_barrier(outdir):
    g = G()
    a = g.conv("x", 3, 8)
    path = g.save(outdir / "out.onnx", a)
    grp = group_of(groups(path), a)
    assert grp["prunable"] == 0 and grp["pinned"] == [f"graph output '{a}'"]
