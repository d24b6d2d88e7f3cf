"""`topiary convert` passes, checked against onnxruntime on the original."""
import os

import numpy as np
import onnx
from onnx import numpy_helper
import pytest

from conftest import FIXTURES, check_model, fixture_path, random_feeds, relative_error, run, session, topiary


@pytest.mark.parametrize("name", FIXTURES)
def test_fold_bn_within_1e5(name, outdir):
    src = fixture_path(name)
    out = outdir / "folded.onnx"
    proc = topiary("convert", src, out, "--fold-bn")
    check_model(str(out))
    before = [n.op_type for n in onnx.load(src).graph.node].count("BatchNormalization")
    after = [n.op_type for n in onnx.load(str(out)).graph.node].count("BatchNormalization")
    # Every BatchNormalization that follows a Conv is gone (DenseNet-style pre-activation BNs stay).
    assert after < before
    assert f"folded {before - after} BatchNormalization" in proc.stdout
    folded = onnx.load(str(out)).graph
    producers = {o: n.op_type for n in folded.node for o in n.output}
    assert not [n for n in folded.node if n.op_type == "BatchNormalization" and producers.get(n.input[0]) == "Conv"]
    assert not [n for n in folded.node if n.op_type == "Identity"], "dead Identity copies of folded weights remain"
    feeds = random_feeds(session(src))
    for a, b in zip(run(src, feeds), run(str(out), feeds)):
        assert relative_error(a, b) <= 1e-5


@pytest.mark.parametrize("name", FIXTURES)
def test_fp16_within_1e2(name, outdir):
    src = fixture_path(name)
    out = outdir / "half.onnx"
    topiary("convert", src, out, "--fp16")
    check_model(str(out))
    m = onnx.load(str(out))
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in m.graph.initializer)
    weights = lambda model, dtype: sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer if t.data_type == dtype)
    assert weights(m, onnx.TensorProto.FLOAT16) * 2 == weights(onnx.load(src), onnx.TensorProto.FLOAT)
    feeds = random_feeds(session(src))
    for a, b in zip(run(src, feeds), run(str(out), feeds)):
        assert b.dtype == np.float32
        assert relative_error(a, b) <= 1e-2


@pytest.mark.parametrize("name", FIXTURES)
def test_external_data_out_and_back_is_bit_identical(name, outdir):
    src = fixture_path(name)
    ext = outdir / "ext" / "model.onnx"
    ext.parent.mkdir()
    topiary("convert", src, ext, "--external-data", "weights.bin", "--size-threshold", "256")
    m = onnx.load(str(ext), load_external_data=False)
    external = [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and all(t.external_data[0].value == "weights.bin" for t in external)
    moved = os.path.getsize(ext.parent / "weights.bin")
    assert moved == sum(int(t.external_data[2].value) for t in external)
    assert os.path.getsize(ext) < os.path.getsize(src) - 0.95 * moved
    check_model(str(ext))
    back = outdir / "back.onnx"
    topiary("convert", ext, back, "--inline-data")
    assert open(src, "rb").read() == open(back, "rb").read()
    feeds = random_feeds(session(src))
    for a, b in zip(run(src, feeds), run(str(ext), feeds)):
        assert np.array_equal(a, b)


def test_external_data_written_by_onnx_is_read(outdir):
    """A model saved by Python onnx with external data loads, and by default keeps its weights
    external (in OUT.data) when rewritten."""
    src = fixture_path("small_resnet")
    m = onnx.load(src)
    onnx.save(m, str(outdir / "a.onnx"), save_as_external_data=True, location="a.weights", size_threshold=128)
    out = outdir / "sub"
    out.mkdir()
    topiary("convert", outdir / "a.onnx", out / "b.onnx")
    assert (out / "b.onnx.data").exists()
    check_model(str(out / "b.onnx"))
    feeds = random_feeds(session(src))
    assert np.array_equal(run(src, feeds)[0], run(str(out / "b.onnx"), feeds)[0])
