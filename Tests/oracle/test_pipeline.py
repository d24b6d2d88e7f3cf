"""`topiary run` / `topiary validate`: the default pipeline end to end, one test per kind of bad
pipeline (the error names file:line:column), --set, ${VAR}, resume after a kill, failed stages,
sweeps, and report.json against schemas/report.schema.json."""
import json
import os
import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import ROOT, check_model, kill_when, session, topiary

MODEL = os.path.join(ROOT, "fixtures", "models", "small_resnet.onnx")
TRAIN = os.path.join(ROOT, "fixtures", "data", "digits_train.npz")
VAL = os.path.join(ROOT, "fixtures", "data", "digits_val.npz")
SCHEMAS = os.path.join(ROOT, "schemas")


def validate_schema(value, schema, root=None, path="$"):
    """A small JSON Schema checker (the subset our schemas use): type, const, enum, required,
    properties, additionalProperties, items, $ref into $defs, minimum/maximum."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return validate_schema(value, root["$defs"][name], root, path)
    types = schema.get("type")
    if types:
        types = types if isinstance(types, list) else [types]
        ok = {"object": isinstance(value, dict), "array": isinstance(value, list), "string": isinstance(value, str),
              "boolean": isinstance(value, bool), "null": value is None,
              "integer": isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer(),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool)}
        assert any(ok[t] for t in types), f"{path}: {value!r} is not {types}"
    if "const" in schema:
        assert value == schema["const"], f"{path}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if "minimum" in schema:
        assert value >= schema["minimum"], path
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                validate_schema(v, props[k], root, f"{path}.{k}")
            elif extra is False:
                raise AssertionError(f"{path}: unexpected key {k}")
            elif isinstance(extra, dict):
                validate_schema(v, extra, root, f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            validate_schema(v, schema["items"], root, f"{path}[{i}]")


def write(outdir, text, name="p.yml"):
    path = outdir / name
    path.write_text(text)
    return path


def pipeline_text(epochs=1, extra=""):
    return f"""model: {MODEL}
data:
  train: {TRAIN}
  val: {VAL}
seed: 0
stages:
  - report: {{name: before}}
  - prune: {{criterion: l2, target: {{flops: 0.5}}, allocation: global}}
  - finetune: {{epochs: {epochs}, lr: 0.02, distill: true}}
  - evaluate: {{name: finetuned}}
  - export: {{path: model.pruned.onnx}}
  - report: {{name: after, compare: before}}
{extra}"""


def test_default_pipeline_end_to_end(outdir):
    out = outdir / "run"
    log = topiary("run", os.path.join(ROOT, "pipeline.yml"), "--out", out, "--set", "stages.5.finetune.epochs=1").stdout
    assert "[9/9] report after" in log
    for f in ("model.pruned.onnx", "report.json", "report.md", "report.html", "run.json", "run.log", "pipeline.resolved.yml"):
        assert (out / f).exists(), f
    model = out / "model.pruned.onnx"
    check_model(str(model))
    x = np.load(VAL)["x"][:1]
    y = session(str(model)).run(None, {"input": x})[0]
    assert y.shape == (1, 10)
    report = json.loads((out / "report.json").read_text())
    validate_schema(report, json.load(open(os.path.join(SCHEMAS, "report.schema.json"))))
    evals = {e["name"]: e for e in report["evaluations"]}
    assert evals["finetuned"]["top1"] > 0.85
    p = report["pruning"][0]
    assert p["after"]["flops"] <= 0.5 * p["before"]["flops"]
    assert report["reports"]["after"]["totals"]["flops"] == p["after"]["flops"]
    # The resolved pipeline is itself a valid pipeline with the default values filled in.
    resolved = (out / "pipeline.resolved.yml").read_text()
    assert "epochs: 1" in resolved and "allocation: global" in resolved and "momentum: 0.9" in resolved
    topiary("validate", out / "pipeline.resolved.yml")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and len(run["stages"]) == 9


def test_report_html_is_self_contained_with_charts(outdir):
    out = outdir / "run"
    topiary("run", write(outdir, pipeline_text()), "--out", out)
    html = (out / "report.html").read_text()
    assert '<svg id="channels-1"' in html and '<svg id="flops"' in html
    assert html.count("<rect") > 10
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|\bhref=|@import|url\(", html)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)


BAD = [
    ("unknown top-level key", "modle: x.onnx\nstages: [{report: {}}]\n", 1, 1, "unknown key 'modle'"),
    ("unknown stage key", f"model: {MODEL}\nstages:\n  - prune: {{criterio: l1, target: {{ratio: 0.5}}}}\n", 3, 13, "unknown key 'criterio'"),
    ("unknown stage", f"model: {MODEL}\nstages:\n  - prun: {{}}\n", 3, 5, "unknown key 'prun'"),
    ("wrong type", f"model: {MODEL}\ndata: {{train: {TRAIN}}}\nstages:\n  - finetune:\n      epochs: three\n", 5, 15, "expected an integer"),
    ("missing file", "model: nope.onnx\nstages: [{report: {}}]\n", 1, 8, "file not found"),
    ("impossible target", f"model: {MODEL}\nstages:\n  - prune:\n      target: {{flops: 1.5}}\n", 4, 23, "flops 1.5 is impossible"),
    ("unreachable target", f"model: {MODEL}\nstages:\n  - prune:\n      target: {{flops: 0.0005}}\n", 4, 15, "cannot keep only 0.0005 of the FLOPs"),
    ("finetune without data", f"model: {MODEL}\nstages:\n  - finetune: {{epochs: 1}}\n", 3, 15, "finetune needs training data"),
    ("compare unknown report", f"model: {MODEL}\nstages:\n  - report: {{name: a, compare: zzz}}\n", 3, 32, "no earlier report is named 'zzz'"),
    ("distill without prune", f"model: {MODEL}\ndata: {{train: {TRAIN}}}\nstages:\n  - finetune: {{distill: true}}\n", 4, 25, "distill needs an earlier prune"),
    ("yaml syntax", f"model: {MODEL}\nstages:\n  - report: {{name: [a\n", 4, 1, "YAML syntax"),
    ("undefined variable", "model: ${TOPIARY_NO_SUCH_VAR}/m.onnx\nstages: [{report: {}}]\n", 1, 8, "environment variable 'TOPIARY_NO_SUCH_VAR' is not set"),
    ("no stages", f"model: {MODEL}\nstages: []\n", 2, 9, "at least one stage"),
    ("bad normalise", f"model: {MODEL}\nstages:\n  - prune: {{target: {{ratio: 0.5}}, normalise: median}}\n", 3, 46, "normalise must be max or mean"),
]


@pytest.mark.parametrize("name,text,line,col,message", BAD, ids=[b[0] for b in BAD])
def test_bad_pipeline_errors_name_line_and_column(name, text, line, col, message, outdir):
    path = write(outdir, text)
    for command in (["validate", path], ["run", path, "--out", outdir / "never"]):
        proc = topiary(*command, check=False)
        assert proc.returncode == 1, proc.stdout
        assert f"{path}:{line}:{col}: " in proc.stderr, proc.stderr
        assert message in proc.stderr, proc.stderr
    assert not (outdir / "never").exists(), "a run with an invalid pipeline wrote output"


def test_set_and_environment_override(outdir):
    os.environ["TOPIARY_TEST_MODEL_DIR"] = os.path.dirname(MODEL)
    text = pipeline_text().replace(MODEL, "${TOPIARY_TEST_MODEL_DIR}/small_resnet.onnx")
    out = outdir / "run"
    topiary("run", write(outdir, text), "--out", out, "--set", "stages.1.prune.target.flops=0.7", "--set", "stages.2.finetune.epochs=1")
    p = json.loads((out / "report.json").read_text())["pruning"][0]
    assert 0.6 < p["after"]["flops"] / p["before"]["flops"] <= 0.7
    bad = topiary("validate", write(outdir, text), "--set", "stages.9.prune.x=1", check=False)
    assert bad.returncode == 1 and "is not an index" in bad.stderr


def test_dry_run_lists_stages_and_writes_nothing(outdir):
    proc = topiary("run", write(outdir, pipeline_text()), "--out", outdir / "dry", "--dry-run")
    assert "3. finetune 1 epoch(s) with distillation" in proc.stdout
    assert not (outdir / "dry").exists()


def test_resume_after_kill_equals_unbroken_run(outdir):
    path = write(outdir, pipeline_text(epochs=5))
    topiary("run", path, "--out", outdir / "a")
    ckpt = outdir / "b" / "state" / "stage2.ckpt"
    kill_when(path, outdir / "b", ckpt)
    assert ckpt.exists() and not (outdir / "b" / "model.pruned.onnx").exists(), "the run ended before it was killed"
    log = topiary("run", path, "--out", outdir / "b", "--resume").stdout
    assert "resuming after stage 2 of 6" in log
    a, b = onnx.load(str(outdir / "a" / "model.pruned.onnx")), onnx.load(str(outdir / "b" / "model.pruned.onnx"))
    assert len(a.graph.initializer) == len(b.graph.initializer)
    for s, t in zip(a.graph.initializer, b.graph.initializer):
        assert np.array_equal(numpy_helper.to_array(s), numpy_helper.to_array(t)), s.name
    ra, rb = json.loads((outdir / "a" / "report.json").read_text()), json.loads((outdir / "b" / "report.json").read_text())
    assert ra["evaluations"] == rb["evaluations"]


def test_failed_stage_keeps_earlier_outputs(outdir):
    bad_val = outdir / "val.npz"
    np.savez(bad_val, x=np.zeros((4, 1, 6, 6), np.float32), y=np.zeros(4, np.int64))
    text = f"model: {MODEL}\ndata: {{val: {bad_val}}}\nstages:\n  - report: {{name: before}}\n  - export: {{path: first.onnx}}\n  - evaluate: {{name: broken}}\n"
    out = outdir / "run"
    proc = topiary("run", write(outdir, text), "--out", out, check=False)
    assert proc.returncode == 1
    assert "stage 3 (evaluate broken) failed" in proc.stderr and "do not fit the model's input" in proc.stderr
    assert (out / "first.onnx").exists()
    report = json.loads((out / "report.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["done", "done", "failed"]
    assert json.loads((out / "run.json").read_text())["status"].startswith("failed")


def test_sweep_reports_side_by_side(outdir):
    text = f"""model: {MODEL}
data: {{val: {VAL}}}
stages:
  - sweep:
      targets: [{{flops: 0.8}}, {{flops: 0.5}}]
      criteria: [l1, fpgm]
      prune: {{allocation: uniform}}
"""
    out = outdir / "run"
    topiary("run", write(outdir, text), "--out", out)
    report = json.loads((out / "report.json").read_text())
    points = report["sweeps"][0]["points"]
    assert [(p["criterion"], p["target"]) for p in points] == [("l1", "flops 0.8"), ("l1", "flops 0.5"), ("fpgm", "flops 0.8"), ("fpgm", "flops 0.5")]
    assert all(p["top1"] is not None for p in points)
    html = (out / "report.html").read_text()
    assert '<svg id="sweep-0"' in html and html.count("<circle") == 4
