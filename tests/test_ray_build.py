"""The Ray build (cluster extra) on a local Ray cluster equals the single-process build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the cluster extra (pip install 'reranker[cluster]') is not installed")
pytest.importorskip("onnxruntime")

from reranker.artifact import Artifact  # noqa: E402
from reranker.cli.artifacts import cpu_encoder  # noqa: E402
from reranker.data import DataFolder  # noqa: E402
from reranker.engine import passage_encoder  # noqa: E402
from reranker.errors import ArtifactError  # noqa: E402
from reranker.store import PassageStore  # noqa: E402
from reranker.store.build import build_store  # noqa: E402
from reranker.store.compress import CodecConfig  # noqa: E402
from reranker.store.distributed import build_store_ray  # noqa: E402

from .conftest import DL19_MINI  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local Ray cluster (~20-60 s)

CODEC = CodecConfig("residual", nbits=2, centroids=8, sample_passages=12, kmeans_iters=3)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_build_equals_single_process_build_and_resumes(local_ray, tiny_exports, tmp_path: Path) -> None:
    art = Artifact.open(tiny_exports["colbert"][1])
    folder = DataFolder.open(DL19_MINI)
    passages = {p: folder.passages[p] for p in sorted(folder.passages)[:36]}
    single = build_store(art, passages, tmp_path / "single", encode=passage_encoder(art), codec=CODEC, chunk=6, progress=False)
    m = build_store_ray(art.directory, passages, tmp_path / "ray", shards=3, encoder=cpu_encoder, codec=CODEC, actors=2, chunk=6)
    assert m["shards"] == ["shards/00000", "shards/00001", "shards/00002"] and m["build"]["shards_built_now"] == 3
    assert (m["passages"], m["tokens"], m["bytes_per_token"]) == (single["passages"], single["tokens"], single["bytes_per_token"])
    one, sharded = PassageStore.open(tmp_path / "single", art), PassageStore.open(tmp_path / "ray", art)
    assert sharded.ids == one.ids and len(sharded.shards) == 3  # type: ignore[attr-defined]
    for pid in one.ids:
        np.testing.assert_array_equal(sharded.get(pid), one.get(pid))
        assert sharded.is_truncated(pid) == one.is_truncated(pid)
    got = sharded.get_many(one.ids[::-1])
    for pid, state in zip(one.ids[::-1], got, strict=True):
        np.testing.assert_array_equal(state, one.get(pid))
    assert sharded.nbytes == one.nbytes
    # resumable per shard: a lost shard is rebuilt alone
    import shutil

    shutil.move(tmp_path / "ray", tmp_path / "ray.partial")
    shutil.rmtree(tmp_path / "ray.partial" / "shards" / "00001")
    (tmp_path / "ray.partial" / "manifest.json").unlink()
    key = {"ids_sha256": m["ids_sha256"], "artifact_sha256": art.checksum, "codec": CODEC.key(), "shards": 3}
    (tmp_path / "ray.partial" / "build.json").write_text(json.dumps(key))
    (tmp_path / "ray.partial" / "codec.json").write_text(json.dumps(m["codec"]))
    again = build_store_ray(
        art.directory, passages, tmp_path / "ray", shards=3, encoder=cpu_encoder, codec=CODEC, actors=1, chunk=6
    )
    assert again["build"]["shards_built_now"] == 1
    resumed = PassageStore.open(tmp_path / "ray", art, verify_vectors=True)
    for pid in one.ids:
        np.testing.assert_array_equal(resumed.get(pid), one.get(pid))
    shard = tmp_path / "ray" / "shards" / "00002" / "manifest.json"  # a shard swapped after the build
    shard.write_text(shard.read_text().replace('"passages": ', '"passages":  '))
    with pytest.raises(ArtifactError, match=r"shards/00002 does not match the sha256"):
        PassageStore.open(tmp_path / "ray", art)
