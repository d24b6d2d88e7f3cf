"""Round trip: `topiary convert IN OUT` with no pass writes the same model back."""
import os

import numpy as np
import onnx
import pytest

from conftest import FIXTURES, ZOO, check_model, fixture_path, normalised, random_feeds, run, session, topiary


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_round_trip_is_identical(name, outdir):
    src = fixture_path(name)
    out = outdir / f"{name}.onnx"
    topiary("convert", src, out)
    check_model(str(out))
    # The exporter's file comes back byte for byte.
    assert open(src, "rb").read() == open(out, "rb").read()
    feeds = random_feeds(session(src))
    for a, b in zip(run(src, feeds), run(str(out), feeds)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)


@pytest.mark.parametrize("path", ZOO, ids=[os.path.basename(p) for p in ZOO])
def test_onnx_zoo_round_trip(path, outdir):
    out = outdir / os.path.basename(path)
    topiary("convert", path, out)
    check_model(str(out))
    assert normalised(onnx.load(path)) == normalised(onnx.load(str(out)))
    feeds = random_feeds(session(path), batch=1)
    for a, b in zip(run(path, feeds), run(str(out), feeds)):
        assert np.array_equal(a, b)


def test_round_trip_keeps_everything_around_the_graph(outdir):
    """Metadata, doc strings, value_info, functions, sparse initializers, subgraphs and typed
    tensor fields survive a round trip."""
    from onnx import TensorProto, helper

    then = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "then", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["z"])], "else", [], [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    fn = helper.make_function("local", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])], [helper.make_opsetid("", 17)])
    sparse = helper.make_sparse_tensor(helper.make_tensor("sv", TensorProto.FLOAT, [2], [1.5, 2.5]), helper.make_tensor("si", TensorProto.INT64, [2], [0, 3]), [4])
    nodes = [
        helper.make_node("If", ["cond"], ["r"], then_branch=then, else_branch=other, doc_string="branch"),
        helper.make_node("Twice", ["r"], ["t"], domain="local"),
        helper.make_node("Add", ["t", "w16"], ["u"]),
        helper.make_node("Cast", ["u"], ["out"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
        initializer=[helper.make_tensor("w16", TensorProto.FLOAT, [2], [0.25, -4.0]),
                     helper.make_tensor("i8", TensorProto.INT8, [3], [-1, 0, 7]),
                     helper.make_tensor("f16", TensorProto.FLOAT16, [2], np.array([1.5, -2], np.float16).view(np.uint16).tolist())],
        value_info=[helper.make_tensor_value_info("r", TensorProto.FLOAT, ["n"])],
        doc_string="graph doc", sparse_initializer=[sparse])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                              functions=[fn], producer_name="test", doc_string="model doc")
    helper.set_model_props(model, {"author": "topiary", "licence": "none"})
    src = outdir / "rich.onnx"
    onnx.save(model, src)
    out = outdir / "rich.out.onnx"
    topiary("convert", src, out)
    back = onnx.load(str(out))
    assert normalised(back) == normalised(model)
    assert back.functions[0].name == "Twice" and back.graph.sparse_initializer[0].dims == [4]
    check_model(str(out))
    feeds = {"cond": np.array(True), "x": np.array([1, 2], np.float32)}
    assert np.array_equal(run(str(src), feeds)[0], run(str(out), feeds)[0])


def test_unknown_fields_survive(outdir):
    """Fields outside the schema (a newer ONNX's, a vendor's) on the model, a node and a tensor come
    back byte for byte."""
    def field(number, payload):
        key = (number << 3) | 2
        out = bytearray()
        for v in (key, len(payload)):
            while True:
                b = v & 0x7F
                v >>= 7
                out.append(b | (0x80 if v else 0))
                if not v:
                    break
        return bytes(out) + payload
    m = onnx.load(fixture_path("cnn_opset11"))
    node = m.graph.node[0]
    node.ParseFromString(node.SerializeToString() + field(1001, b"node extra"))
    t = m.graph.initializer[0]
    t.ParseFromString(t.SerializeToString() + field(1002, b"tensor extra"))
    data = m.SerializeToString() + field(1000, b"model extra")
    src = outdir / "unknown.onnx"
    src.write_bytes(data)
    out = outdir / "out.onnx"
    topiary("convert", src, out)
    back = out.read_bytes()
    for marker in (b"model extra", b"node extra", b"tensor extra"):
        assert marker in back
    assert back == data
