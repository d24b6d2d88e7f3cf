"""Snapshots of what people read: `topiary report` of every fixture and `inspect --groups` of the
fixtures with the interesting ties. A change in wording, layout or numbers shows as a diff here;
regenerate deliberately with UPDATE_SNAPSHOTS=1."""
import os

import pytest

from conftest import FIXTURES, ROOT, fixture_path, topiary

SNAPSHOTS = os.path.join(os.path.dirname(__file__), "snapshots")


def check(name, text):
    path = os.path.join(SNAPSHOTS, name)
    text = text.replace(ROOT + "/", "")
    if os.environ.get("UPDATE_SNAPSHOTS") or not os.path.exists(path):
        if not os.environ.get("UPDATE_SNAPSHOTS") and os.environ.get("CI"):
            pytest.fail(f"snapshot {name} is missing")
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"{name} changed; run with UPDATE_SNAPSHOTS=1 if that is intended"


@pytest.mark.parametrize("name", FIXTURES)
def test_report_snapshot(name):
    check(f"report-{name}.txt", topiary("report", os.path.relpath(fixture_path(name), ROOT)).stdout)


@pytest.mark.parametrize("name", ["small_resnet", "mobilenetv3", "shufflenetv2", "dense_inception"])
def test_groups_snapshot(name):
    check(f"groups-{name}.txt", topiary("inspect", "--groups", os.path.relpath(fixture_path(name), ROOT)).stdout)
