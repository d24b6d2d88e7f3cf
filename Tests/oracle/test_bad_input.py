"""Bad input: a clear error naming the file, a non-zero exit, no output left behind, no crash."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import fixture_path, topiary


def assert_refused(args, outdir, *needles):
    before = set(os.listdir(outdir))
    proc = topiary(*args, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("topiary: error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    assert "Fatal error" not in proc.stderr and "crashed" not in proc.stderr
    assert set(os.listdir(outdir)) == before, "output or temporary files were left behind"
    return proc.stderr


def raw_tensor(name, dims, data):
    """A float TensorProto with `dims` and the given raw bytes, without onnx's size check."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, raw_data=data)
    t.dims.extend(dims)
    return t


def tiny_model(initializer=(), nodes=None, inputs=None):
    nodes = nodes or [helper.make_node("Relu", ["x"], ["y"])]
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=list(initializer))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_truncated_file(outdir):
    data = open(fixture_path("small_resnet"), "rb").read()
    bad = outdir / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 3])
    assert_refused(["convert", bad, outdir / "out.onnx"], outdir, str(bad), "truncated")


def test_random_bytes(outdir):
    bad = outdir / "random.onnx"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert_refused(["report", bad], outdir, str(bad), "not")


def test_empty_file(outdir):
    bad = outdir / "empty.onnx"
    bad.write_bytes(b"")
    assert_refused(["inspect", bad], outdir, str(bad), "empty")


def test_tensor_declared_larger_than_its_data(outdir):
    t = raw_tensor("w", [1000], np.zeros(2, np.float32).tobytes())
    bad = outdir / "short.onnx"
    onnx.save(tiny_model([t]), bad)
    assert_refused(["convert", bad, outdir / "out.onnx"], outdir, str(bad), "'w'", "4000 bytes", "8 bytes")


def test_dimension_needing_terabytes(outdir):
    t = raw_tensor("huge", [1 << 20, 1 << 20], np.zeros(1, np.float32).tobytes())
    bad = outdir / "huge.onnx"
    onnx.save(tiny_model([t]), bad)
    assert_refused(["report", bad], outdir, str(bad), "'huge'", "4398046511104 bytes")


def test_dimension_overflowing(outdir):
    t = raw_tensor("over", [1 << 62, 1 << 62], np.zeros(1, np.float32).tobytes())
    bad = outdir / "over.onnx"
    onnx.save(tiny_model([t]), bad)
    assert_refused(["report", bad], outdir, str(bad), "'over'", "too many elements")


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_model_folder(outdir, location):
    t = helper.make_tensor("w", TensorProto.FLOAT, [2], [0, 0])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "8")):
        e = t.external_data.add()
        e.key, e.value = k, v
    sub = outdir / "m"
    sub.mkdir()
    (outdir / "secret.bin").write_bytes(b"\0" * 8)
    bad = sub / "ext.onnx"
    onnx.save(tiny_model([t]), bad)
    assert_refused(["convert", bad, sub / "out.onnx"], sub, str(bad), "'w'", "model's folder")


def test_external_data_past_end_of_file(outdir):
    t = helper.make_tensor("w", TensorProto.FLOAT, [4], [0, 0, 0, 0])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "8"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    (outdir / "w.bin").write_bytes(b"\0" * 12)
    bad = outdir / "past.onnx"
    onnx.save(tiny_model([t]), bad)
    assert_refused(["report", bad], outdir, str(bad), "beyond the end")


def test_cycle_in_graph(outdir):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Relu", ["a"], ["y"], name="third")]
    bad = outdir / "cycle.onnx"
    onnx.save(tiny_model(nodes=nodes), bad)
    assert_refused(["convert", bad, outdir / "out.onnx"], outdir, str(bad), "cycle", "'first'", "'second'")


def test_unknown_op(outdir):
    bad = outdir / "unknown.onnx"
    onnx.save(tiny_model(nodes=[helper.make_node("Frobnicate", ["x"], ["y"], name="mystery")]), bad)
    assert_refused(["report", bad], outdir, str(bad), "'Frobnicate'", "'mystery'")


def test_undefined_input(outdir):
    bad = outdir / "dangling.onnx"
    onnx.save(tiny_model(nodes=[helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")]), bad)
    assert_refused(["report", bad], outdir, str(bad), "'ghost'")


def test_missing_output_directory(outdir):
    target = outdir / "no" / "such" / "dir" / "out.onnx"
    assert_refused(["convert", fixture_path("small_resnet"), target], outdir, str(target), "does not exist")


def test_missing_input_file(outdir):
    assert_refused(["report", outdir / "absent.onnx"], outdir, "absent.onnx", "No such file")


def test_existing_output_survives_a_failed_convert(outdir):
    target = outdir / "keep.onnx"
    target.write_bytes(b"previous contents")
    bad = outdir / "random.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    proc = topiary("convert", bad, target, check=False)
    assert proc.returncode == 1
    assert target.read_bytes() == b"previous contents"
    assert sorted(os.listdir(outdir)) == ["keep.onnx", "random.onnx"]


def test_input_file_is_never_modified(outdir):
    src = fixture_path("mobilenetv2")
    before = open(src, "rb").read()
    topiary("convert", src, outdir / "x.onnx", "--fold-bn", "--fp16")
    assert open(src, "rb").read() == before
