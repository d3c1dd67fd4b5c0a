"""The teacher's precision and backend by the CPU's flags (reranker.machine.CROSS_ENCODER_SERVING)."""

from __future__ import annotations

import pytest

from reranker import machine
from reranker.errors import ConfigError
from reranker.machine import CROSS_ENCODER_SERVING, cross_encoder_serving, export_precision, parse_cpuinfo

ZEN4 = parse_cpuinfo("model name\t: AMD Zen 4\nflags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n", cores=2)
AVX2 = parse_cpuinfo("model name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n", cores=2)
BF16 = parse_cpuinfo("model name\t: x\nflags\t\t: avx2 avx512f avx512_bf16\n", cores=2)


def test_each_kind_of_cpu_gets_its_measured_row() -> None:
    assert cross_encoder_serving(ZEN4) == CROSS_ENCODER_SERVING["int8"]
    assert (cross_encoder_serving(ZEN4).precision, cross_encoder_serving(ZEN4).backend) == ("int8-static", "openvino")
    assert (cross_encoder_serving(AVX2).precision, cross_encoder_serving(AVX2).backend) == ("int8", "onnxruntime")
    assert cross_encoder_serving(AVX2).int8_exclude == machine.FFN_OUTPUTS  # dynamic int8 lost 0.0095 without
    assert (cross_encoder_serving(BF16).precision, cross_encoder_serving(BF16).backend) == ("fp32", "openvino")
    measured = [row for name, row in CROSS_ENCODER_SERVING.items() if name != "other"]  # "other": the fp32 reference
    assert all("pairs/s" in row.reason or "x fp32" in row.reason for row in measured)


def test_export_auto_is_fp32_for_students_and_the_rows_precision_for_a_cross_encoder(tiny_exports) -> None:
    student, teacher = tiny_exports["colbert"][0], tiny_exports["bert_cat"][0]
    assert export_precision(student, False, ZEN4).precision == "fp32"
    assert export_precision(student, False, AVX2).int8_exclude is None
    avx2 = export_precision(teacher, False, AVX2)
    assert (avx2.precision, avx2.int8_exclude) == ("int8", machine.FFN_OUTPUTS) and "kept in fp32" in avx2.why
    assert export_precision(teacher, True, ZEN4).precision == "int8-static"
    with pytest.raises(ConfigError, match="--calibration"):
        export_precision(teacher, False, ZEN4)


def test_backend_auto_follows_the_row_for_its_precision_only(tiny_exports) -> None:
    pytest.importorskip("onnxruntime")
    from reranker.artifact import Artifact
    from reranker.engine import loader

    teacher, student = Artifact.open(tiny_exports["bert_cat"][1]), Artifact.open(tiny_exports["colbert"][1])
    openvino = "openvino" if loader.importlib.util.find_spec("openvino") else "onnxruntime"
    assert loader.auto_backend(teacher, BF16) == openvino  # fp32 in bf16 on OpenVINO
    assert loader.auto_backend(teacher, ZEN4) == openvino  # not its row's precision, but bf16 in hardware
    assert loader.auto_backend(teacher, AVX2) == "onnxruntime"
    assert loader.auto_backend(student, ZEN4) == "onnxruntime"


def test_this_machine_has_a_row() -> None:
    assert cross_encoder_serving() in CROSS_ENCODER_SERVING.values()
    assert machine.cpu_facts().describe().startswith(machine.cpu_facts().model)


def test_export_auto_on_an_avx2_cpu_keeps_the_feed_forward_outputs_in_fp32(tiny_exports, tmp_path, monkeypatch, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    from reranker.cli import main
    from reranker.manifest import read_manifest

    monkeypatch.setattr(machine, "cpu_facts", lambda: AVX2)
    assert main(["export", "--model", str(tiny_exports["bert_cat"][0]), "--out", str(tmp_path / "a"), "--precision", "auto"]) == 0
    assert "kept in fp32" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "a")
    assert (manifest["precision"], manifest["int8_exclude"]) == ("int8", machine.FFN_OUTPUTS)
    graph = onnx.load(str(tmp_path / "a" / "cross_encoder.onnx"), load_external_data=False).graph
    float_ffn = [n.name for n in graph.node if n.op_type == "MatMul" and "output/dense" in n.name]
    assert float_ffn and any(n.op_type == "MatMulInteger" for n in graph.node)  # the rest is int8


def test_export_auto_keeps_an_imported_cross_encoder_in_fp32_where_the_row_names_bert_nodes(tiny_exports, tmp_path) -> None:
    import json

    config = json.loads((tiny_exports["bert_cat"][0] / "config.json").read_text())
    imported = {"hf_config": {"model_type": "roberta"}, "pair_template": {"prefix": [0], "middle": [2, 2], "suffix": [2]}}
    (tmp_path / "config.json").write_text(json.dumps({**config, **imported, "arch": "hf_cat", "pair_max_len": 64}))
    choice = export_precision(tmp_path, False, AVX2)
    assert (choice.precision, choice.int8_exclude) == ("fp32", None) and "is for BERT-cat" in choice.why


def test_a_cpu_without_measured_flags_gets_fp32() -> None:
    arm = parse_cpuinfo("model name\t: Neoverse-N1\nFeatures\t: fp asimd evtstrm crc32\n", cores=4)
    choice = cross_encoder_serving(arm)
    assert (choice.precision, choice.backend, choice.int8_exclude) == ("fp32", "onnxruntime", None)
    assert cross_encoder_serving(parse_cpuinfo("", cores=2)) == choice  # no /proc/cpuinfo


def test_export_auto_takes_the_users_exclusion_and_refuses_it_where_the_choice_is_not_int8(tiny_exports) -> None:
    student, teacher = tiny_exports["colbert"][0], tiny_exports["bert_cat"][0]
    mine = export_precision(teacher, False, AVX2, int8_exclude=r"layer\.0/output/dense")
    assert mine.int8_exclude == r"layer\.0/output/dense" and r"layer\.0/output/dense kept in fp32" in mine.why
    assert export_precision(teacher, False, AVX2, int8_exclude="").int8_exclude == ""  # '' switches it off
    assert export_precision(teacher, True, ZEN4, int8_exclude="x").int8_exclude == "x"  # int8-static takes one too
    with pytest.raises(ConfigError, match="--int8-exclude is for int8 precisions; --precision auto picks fp32"):
        export_precision(student, False, AVX2, int8_exclude="x")
    with pytest.raises(ConfigError, match="picks fp32"):
        export_precision(teacher, False, BF16, int8_exclude="x")
