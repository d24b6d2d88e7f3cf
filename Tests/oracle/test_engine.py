"""The training engine against onnxruntime and against itself: forward equals onnxruntime,
fine-tuning lowers the loss, training from scratch learns, a killed run resumes to the same model,
a trained model predicts the same in onnxruntime, and bad data is refused clearly."""
import os
import signal
import subprocess
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import FIXTURES, ROOT, TOPIARY, check_model, fixture_path, relative_error, session, topiary

DATA = os.path.join(ROOT, "fixtures", "data")
TRAIN, VAL = os.path.join(DATA, "digits_train.npz"), os.path.join(DATA, "digits_val.npz")


def engine_forward(model, x, outdir):
    np.save(outdir / "x.npy", x)
    topiary("infer", model, "--input", outdir / "x.npy", "--output", outdir / "y.npy")
    return np.load(outdir / "y.npy")


def ort_forward(model, x):
    s = session(str(model))
    name = s.get_inputs()[0].name
    if s.get_inputs()[0].shape[0] == 1 and len(x) > 1:
        return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return s.run(None, {name: x})[0]


@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("name", FIXTURES)
def test_forward_equals_onnxruntime(name, batch, outdir):
    x = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)
    ours = engine_forward(fixture_path(name), x, outdir)
    ref = ort_forward(fixture_path(name), x)
    assert ours.shape == ref.shape
    assert relative_error(ref, ours) <= 1e-4


def evaluate(model, data=VAL):
    out = topiary("eval", model, "--data", data, "--json").stdout
    import json
    return json.loads(out)


def test_eval_matches_pytorch_accuracy():
    from conftest import manifest
    for name in ("small_resnet", "mobilenetv2"):
        assert abs(evaluate(fixture_path(name))["top1"] - manifest()[name]["val_accuracy"]) < 1e-3


def test_finetuning_one_epoch_lowers_training_loss(outdir):
    pruned = outdir / "pruned.onnx"
    topiary("prune", fixture_path("mobilenetv2"), pruned, "--ratio", "0.5")
    before = evaluate(pruned, TRAIN)["loss"]
    out = outdir / "tuned.onnx"
    topiary("train", pruned, "--train", TRAIN, "--epochs", "1", "--lr", "0.02", "--out", out)
    after = evaluate(out, TRAIN)["loss"]
    assert after < 0.7 * before, (before, after)
    check_model(str(out))


def scrambled(src, dst, seed=0):
    """The fixture's architecture with fresh random weights (He-style), BN reset."""
    m = onnx.load(src)
    rng = np.random.default_rng(seed)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32:
            continue
        if a.ndim >= 2:
            fan_in = int(np.prod(a.shape[1:]))
            a = rng.standard_normal(a.shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        elif "running_var" in t.name or t.name.endswith(".weight"):
            a = np.ones_like(a)
        else:
            a = np.zeros_like(a)
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, dst)


def test_training_from_scratch_reaches_90_percent(outdir):
    """small_resnet's architecture from random weights, 6 epochs of SGD with cosine decay on the
    1,438 digits: validation top-1 must reach 90 % (PyTorch reaches 98 % in 8 epochs)."""
    fresh = outdir / "fresh.onnx"
    scrambled(fixture_path("small_resnet"), fresh)
    assert evaluate(fresh)["top1"] < 0.3
    out = outdir / "trained.onnx"
    log = topiary("train", fresh, "--train", TRAIN, "--val", VAL, "--epochs", "6", "--lr", "0.05", "--weight-decay", "5e-4", "--out", out).stdout
    assert "epoch 6:" in log
    assert evaluate(out)["top1"] >= 0.90


def test_trained_model_predicts_the_same_in_onnxruntime(outdir):
    out = outdir / "trained.onnx"
    topiary("train", fixture_path("dense_inception"), "--train", TRAIN, "--epochs", "1", "--lr", "0.01", "--out", out)
    check_model(str(out))
    x = np.load(VAL)["x"][:64]
    ours, ref = engine_forward(out, x, outdir), ort_forward(out, x)
    assert relative_error(ref, ours) <= 1e-4
    assert (ours.argmax(1) == ref.argmax(1)).all()
    # Training changed the weights.
    assert relative_error(ort_forward(fixture_path("dense_inception"), x), ref) > 1e-3


def test_resume_after_kill_equals_unbroken_run(outdir):
    args = ["train", fixture_path("small_resnet"), "--train", TRAIN, "--epochs", "6", "--lr", "0.02", "--seed", "3", "--flip", "--crop-padding", "1"]
    topiary(*args, "--out", outdir / "unbroken.onnx", "--checkpoint", outdir / "a.ckpt")
    ckpt = outdir / "b.ckpt"
    proc = subprocess.Popen([TOPIARY, *map(str, args), "--out", str(outdir / "resumed.onnx"), "--checkpoint", str(ckpt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (outdir / "resumed.onnx").exists(), "the run finished before it could be killed"
    topiary(*args, "--out", outdir / "resumed.onnx", "--checkpoint", ckpt, "--resume")
    a, b = onnx.load(str(outdir / "unbroken.onnx")), onnx.load(str(outdir / "resumed.onnx"))
    for s, t in zip(a.graph.initializer, b.graph.initializer):
        assert np.array_equal(numpy_helper.to_array(s), numpy_helper.to_array(t)), s.name


def bad_data(outdir, name, **arrays):
    path = outdir / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("case,needle", [
    ("lengths", "images but"),
    ("labels", "out of range"),
    ("dtype", "labels must be integers"),
    ("shape", "do not fit the model's input"),
])
def test_bad_datasets_are_refused(case, needle, outdir):
    x = np.zeros((10, 1, 8, 8), np.float32)
    y = np.zeros(10, np.int64)
    arrays = {"lengths": dict(x=x, y=y[:7]), "labels": dict(x=x, y=y + 12), "dtype": dict(x=x, y=y.astype(np.float32)),
              "shape": dict(x=np.zeros((10, 1, 6, 6), np.float32), y=y)}[case]
    path = bad_data(outdir, f"{case}.npz", **arrays)
    proc = topiary("eval", fixture_path("small_resnet"), "--data", path, check=False)
    assert proc.returncode == 1 and needle in proc.stderr, proc.stderr


def test_corrupt_npz_and_missing_labels(outdir):
    bad = outdir / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    proc = topiary("eval", fixture_path("small_resnet"), "--data", bad, check=False)
    assert proc.returncode == 1 and "bad.npz" in proc.stderr
    images = outdir / "alone-images-idx3-ubyte"
    images.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 8]) + bytes(64))
    proc = topiary("eval", fixture_path("small_resnet"), "--data", images, check=False)
    assert proc.returncode == 1 and "label file not found" in proc.stderr


def test_idx_gz_dataset_gives_the_npz_accuracy():
    idx = os.path.join(DATA, "digits_val-images-idx3-ubyte.gz")
    a, b = evaluate(fixture_path("small_resnet"), idx), evaluate(fixture_path("small_resnet"))
    assert a["samples"] == b["samples"] == 359
    assert abs(a["top1"] - b["top1"]) < 0.02  # IDX pixels are quantised to 8 bits


def test_unsupported_op_is_named_before_work_starts(outdir):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Erf", ["x"], ["y"], name="odd")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), outdir / "erf.onnx")
    proc = topiary("train", outdir / "erf.onnx", "--train", TRAIN, "--out", outdir / "o.onnx", check=False)
    assert proc.returncode == 1 and "no kernel for Erf" in proc.stderr and "'odd'" in proc.stderr
