"""Shared helpers of the oracle tests: they run the real `topiary` binary and check what it writes
with the independent implementations, onnx.checker and onnxruntime."""
import glob
import json
import os
import signal
import subprocess
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(ROOT, "fixtures", "models")
TOPIARY = os.environ.get("TOPIARY", os.path.join(ROOT, ".build", "release", "topiary"))
FIXTURES = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(MODELS, "*.onnx")))
ZOO = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "*.onnx")))


def manifest():
    with open(os.path.join(MODELS, "manifest.json")) as f:
        return json.load(f)


def fixture_path(name):
    return os.path.join(MODELS, name + ".onnx")


def topiary(*args, check=True):
    """Runs topiary; with check, fails the test on a non-zero exit and shows stderr."""
    proc = subprocess.run([TOPIARY, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    if check and proc.returncode != 0:
        pytest.fail(f"topiary {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def kill_when(pipeline, out, ckpt, timeout=120):
    """Runs `topiary run pipeline --out out` and kills it (SIGKILL) once `ckpt` exists."""
    proc = subprocess.Popen([TOPIARY, "run", str(pipeline), "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def random_feeds(sess, seed=0, batch=2):
    """Random inputs for every model input; symbolic dims become `batch`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(double)": np.float64}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(types[i.type])
    return feeds


def run(path, feeds):
    return session(path).run(None, feeds)


def check_model(path):
    onnx.checker.check_model(path, full_check=True)


def relative_error(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


def normalised(model):
    """A copy of the ModelProto with empty optional strings cleared (proto2 presence of "" is not
    information the IR keeps)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)

    def walk(msg):
        for field, value in msg.ListFields():
            if field.type == field.TYPE_STRING and not field.is_repeated and value == "":
                msg.ClearField(field.name)
            elif field.type == field.TYPE_MESSAGE:
                if field.is_repeated:
                    for item in value:
                        walk(item)
                else:
                    walk(value)
    walk(m)
    return m


@pytest.fixture
def outdir(tmp_path):
    return tmp_path
