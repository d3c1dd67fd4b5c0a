"""What several benchmarks share: paths, the machine, percentiles, stores, in-process and served engines."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from reranker.artifact import Artifact
from reranker.engine import LocalEngine, RuntimeConfig, passage_encoder
from reranker.store.build import build_store
from reranker.store.compress import CodecConfig

ROOT = Path(__file__).resolve().parents[1]
DL19 = ROOT / "data/msmarco-passage/trec-dl-2019"
CPU = RuntimeConfig(provider="cpu")


def run_facts() -> dict[str, object]:
    """What every benchmark record states beside its figures: the machine (CPU model, cores, the
    instruction-set flags that decide precision), the date, the command and the packages."""
    import datetime as dt

    from reranker.machine import cpu_facts
    from reranker.manifest import package_versions

    return {
        "machine": cpu_facts().as_dict(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m", _module(), *sys.argv[1:]]),
        "packages": package_versions(),
    }


def _module() -> str:
    """The module this process runs as (``python -m NAME``): a package's ``__main__`` by its package."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = spec.name if spec is not None else Path(sys.argv[0]).stem
    return name.removesuffix(".__main__")


def dated(study: str, stem: str) -> Path:
    """``studies/STUDY/results/YYYY-MM-DD-STEM``: where a study writes today's record by default."""
    import datetime as dt

    return Path("studies") / study / "results" / f"{dt.date.today().isoformat()}-{stem}"


def write_json(path: Path | None, data: object) -> None:
    """Writes a benchmark's result as indented JSON to PATH (its folder made), or nothing when PATH is
    None; a record (a dict) gains :func:`run_facts` under ``run`` unless it states them already."""
    if path is not None:
        if isinstance(data, dict) and "run" not in data:
            data = {**data, "run": run_facts()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('unknown' elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


class Stopwatch:
    """Wall-clock time of a block: ``with Stopwatch() as t: ...`` then ``t.ms`` (milliseconds) or
    ``t.seconds``, from :func:`time.perf_counter`; ``t.ms`` is NaN inside the block."""

    def __enter__(self) -> Stopwatch:
        self.seconds = float("nan")
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start

    @property
    def ms(self) -> float:
        return self.seconds * 1000.0


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated ``q`` quantile (0..1) of ``values``.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ensure_store(
    artifact: Artifact, passages: Mapping[str, str], store_dir: Path, *, progress: bool = False, codec: CodecConfig | None = None
) -> Path:
    """A passage store of ``passages`` for ``artifact`` in ``store_dir`` (``codec``: default float16),
    built when missing."""
    if not (store_dir / "manifest.json").is_file():
        build_store(artifact, passages, store_dir, encode=passage_encoder(artifact, CPU), progress=progress, codec=codec)
    return store_dir


def local_engine(artifact: Path | str, store: Path | str | None = None, runtime: RuntimeConfig = CPU) -> LocalEngine:
    """One model in process, through the engine's request path (pre stage, batcher, core stage)."""
    return LocalEngine.of(str(artifact), str(store) if store else "", runtime=runtime, cache_mb=0)  # measure the model


@dataclasses.dataclass
class Served:
    """A ``reranker serve`` process and where it listens; unpacks as (process, gRPC, metrics target)."""

    proc: subprocess.Popen
    grpc: str
    metrics: str
    http: str | None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.proc, self.grpc, self.metrics))


def start_server(config: Path) -> Served:
    """``reranker serve --config`` on free ports (gRPC, metrics, HTTP) once it serves."""
    command = [sys.executable, "-m", "reranker.cli", "serve", "--config", str(config), "--port", "0", "--metrics-port", "0"]
    proc = subprocess.Popen([*command, "--http-port", "0"], stderr=subprocess.PIPE, text=True)
    grpc_port = metrics_port = http_port = None
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        m = re.search(r"gRPC on \S+:(\d+) .*metrics on http://localhost:(\d+)/metrics", line)
        if m:
            grpc_port, metrics_port = m.group(1), m.group(2)
        h = re.search(r"HTTP /rerank on \S+:(\d+)", line)
        if h:
            http_port = h.group(1)
        if "serving " in line and grpc_port:
            break
    if grpc_port is None:
        raise SystemExit("the server did not start")
    log = proc.stderr
    threading.Thread(target=lambda: [None for _ in log], daemon=True).start()  # keep draining its log
    return Served(proc, f"localhost:{grpc_port}", f"localhost:{metrics_port}", f"127.0.0.1:{http_port}" if http_port else None)
