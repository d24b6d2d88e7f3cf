"""`topiary prune`: every pruned model passes onnx.checker, runs in onnxruntime with the original
output shape, and computes what the masked model (same shapes, removed channels zeroed) computes."""
import json

import numpy as np
import onnx
import pytest

from conftest import FIXTURES, check_model, fixture_path, random_feeds, relative_error, run, session, topiary

TARGETS = [("--ratio", "0.3"), ("--ratio", "0.5"), ("--flops", "0.5")]


def prune_and_check(src, outdir, *args, feeds=None):
    """Prunes src with args, checks the result against its masked twin, returns the JSON report."""
    out, masked, report = outdir / "pruned.onnx", outdir / "masked.onnx", outdir / "report.json"
    topiary("prune", src, out, *args, "--write-masked", masked, "--report", report)
    check_model(str(out))
    check_model(str(masked))
    feeds = feeds or random_feeds(session(str(src)))
    original = run(str(src), feeds)
    pruned = run(str(out), feeds)
    twin = run(str(masked), feeds)
    for o, p, m in zip(original, pruned, twin):
        assert p.shape == o.shape
        assert relative_error(m, p) <= 1e-4
    return json.loads(report.read_text())


@pytest.mark.parametrize("flag,value", TARGETS, ids=[f"{f[2:]}{v}" for f, v in TARGETS])
@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_pruned_equals_masked(name, flag, value, outdir):
    r = prune_and_check(fixture_path(name), outdir, flag, value, "--criterion", "l1")
    assert r["after"]["params"] < r["before"]["params"]
    kept = r["after"]["flops"] / r["before"]["flops"]
    if flag == "--flops":
        # The target is met, and not by much more than one rounding step.
        assert kept <= float(value) + 1e-9
        assert kept >= float(value) - 0.12
    widths = {g["group"]: g for g in r["groups"]}
    assert any(g["after"] < g["before"] for g in widths.values())


@pytest.mark.parametrize("name", FIXTURES)
def test_group_magnitude_on_every_fixture(name, outdir):
    """group_l2 scores consumers' input slices too: through residual Adds, depthwise convs, concat,
    squeeze-excite, channel shuffle and flatten, the model still equals its masked twin."""
    r = prune_and_check(fixture_path(name), outdir, "--flops", "0.5", "--criterion", "group_l2", "--allocation", "uniform")
    assert r["after"]["flops"] <= 0.5 * r["before"]["flops"]


@pytest.mark.parametrize("criterion", ["l1", "l2", "group_l2", "bn_scale", "fpgm", "random"])
def test_every_criterion_and_global_allocation(criterion, outdir):
    r = prune_and_check(fixture_path("mobilenetv2"), outdir, "--ratio", "0.4", "--criterion", criterion, "--allocation", "global", "--round-to", "4")
    for g in r["groups"]:
        if g["after"] != g["before"]:
            assert g["after"] % 4 == 0


@pytest.mark.parametrize("combine", ["mean", "max"])
def test_score_combinations(combine, outdir):
    prune_and_check(fixture_path("small_resnet"), outdir, "--ratio", "0.5", "--combine", combine)


def test_round_to_and_min_channels(outdir):
    r = prune_and_check(fixture_path("small_resnet"), outdir, "--ratio", "0.7", "--round-to", "8", "--min-channels", "8")
    changed = [g for g in r["groups"] if g["after"] != g["before"]]
    assert changed
    for g in changed:
        assert g["after"] % 8 == 0 and g["after"] >= 8


def test_params_target(outdir):
    r = prune_and_check(fixture_path("dense_inception"), outdir, "--params", "0.6", "--allocation", "global")
    assert r["after"]["params"] <= 0.6 * r["before"]["params"] + 1


def test_impossible_target_says_how_close_it_gets(outdir):
    proc = topiary("prune", fixture_path("small_resnet"), outdir / "x.onnx", "--flops", "0.001", check=False)
    assert proc.returncode == 1
    assert "cannot keep only 0.001 of the FLOPs" in proc.stderr and "keeps" in proc.stderr
    assert not (outdir / "x.onnx").exists()


def test_ignore_keeps_a_layer_whole(outdir):
    src = fixture_path("small_resnet")
    r = prune_and_check(src, outdir, "--ratio", "0.5", "--ignore", "/layers/layers.0/c1/c1.0/Conv")
    group = next(g for g in r["groups"] if "/layers/layers.0/c1/c1.0/Conv (Conv)" in g["producers"])
    assert group["after"] == group["before"]


def test_zero_channels_are_pruned_without_changing_outputs(outdir):
    """Channels that are exactly zero in every member are the ones l1 removes, and removing them
    changes nothing."""
    src = fixture_path("small_resnet")
    groups = json.loads(topiary("inspect", "--groups", "--json", src).stdout)["groups"]
    m = onnx.load(src)
    inits = {t.name: t for t in m.graph.initializer}
    for g in groups:
        if g["prunable"] != g["width"]:
            continue
        k = g["width"] // 4
        for member in g["members"]:
            name, axis = member.rsplit(":", 1)
            if name.endswith("running_var"):
                continue
            if name not in inits:  # an Identity copy of a weight zeroed through its source
                continue
            t = inits[name]
            a = onnx.numpy_helper.to_array(t).copy()
            index = [slice(None)] * a.ndim
            index[int(axis)] = slice(0, k)
            a[tuple(index)] = 0
            t.CopyFrom(onnx.numpy_helper.from_array(a, name))
    zeroed = outdir / "zeroed.onnx"
    onnx.save(m, zeroed)
    out = outdir / "p.onnx"
    topiary("prune", zeroed, out, "--ratio", "0.25", "--criterion", "l1")
    feeds = random_feeds(session(str(zeroed)), batch=3)
    a, b = run(str(zeroed), feeds)[0], run(str(out), feeds)[0]
    assert relative_error(a, b) <= 1e-5
    assert onnx.load(str(out)).graph.initializer[0].dims != []
