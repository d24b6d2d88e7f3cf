"""schemas/onnx.proto: the committed C bindings are what protoc-c makes of it today, and its
messages, fields and numbers are ONNX's."""
import filecmp
import os
import subprocess

import onnx
from google.protobuf import descriptor_pb2

from conftest import ROOT


def test_generated_code_is_up_to_date(tmp_path):
    subprocess.run([os.path.join(ROOT, "scripts", "gen-proto"), str(tmp_path)], check=True)
    for rel in ("onnx.pb-c.c", os.path.join("include", "onnx.pb-c.h")):
        assert filecmp.cmp(tmp_path / rel, os.path.join(ROOT, "Sources", "CONNX", rel), shallow=False), f"{rel} is stale: run scripts/gen-proto"


def fields(file_proto):
    out = {}

    def walk(prefix, msgs, enums):
        for e in enums:
            out[prefix + e.name] = sorted((v.name, v.number) for v in e.value)
        for m in msgs:
            name = prefix + m.name
            out[name] = sorted((f.name, f.number, f.type, f.label) for f in m.field)
            walk(name + ".", m.nested_type, m.enum_type)
    walk("", file_proto.message_type, file_proto.enum_type)
    return out


def test_schema_matches_onnx_wire_format(tmp_path):
    desc = tmp_path / "ours.pb"
    subprocess.run(["protoc-c", f"-I{ROOT}/schemas", f"--descriptor_set_out={desc}", f"{ROOT}/schemas/onnx.proto"], check=True)
    ours = descriptor_pb2.FileDescriptorSet.FromString(desc.read_bytes()).file[0]
    theirs = descriptor_pb2.FileDescriptorProto()
    onnx.onnx_ml_pb2.DESCRIPTOR.CopyToProto(theirs)
    a, b = fields(ours), fields(theirs)
    assert set(a) == set(b)
    for name in a:
        assert a[name] == b[name], name
