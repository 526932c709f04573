"""``recflow api`` under a bounded loopback load, beside ``mlflow models serve`` of the same registered pyfunc.

    RECFLOW_HOME=<root with a champion> python -m bench.api [--dataset ml-1m] [--requests 4000]
    python -m bench.api --shape 25m            # a synthetic root of ML-25M's shape, served through the index

For each endpoint and concurrency (1, 16, 64) it sends a fixed number of requests over
keep-alive connections and stops by itself; it prints requests/s, p50 / p95 / p99 latency and the
failures, then the same ``GET /recommend`` requests (the same users, the same k) against
``mlflow models serve -m models:/recflow-<dataset>@champion`` (one uvicorn worker, as
``recflow api`` runs one process), and a champion swap under load: the champion record flips
between two registered versions while requests run at concurrency 16, every response checked.

The load generator is this process: raw HTTP/1.1 on asyncio (uvloop), requests pre-encoded, so
it costs far less CPU per request than an HTTP client library would; it shares the 2 cores with
the server, and the table says how much CPU each used (process CPU seconds / wall seconds: 1.00
is one core busy). Latency is from writing the request to reading the whole body.

``--shape 25m`` builds (once, under ``--shape-root``) a root of ML-25M's shape: 162,541 users,
59,047 items, 64-d unit vectors with an HNSW index (hnswlib, tuned by ``recflow.retrieval.index``),
user vectors and about 25M rated pairs with a long-tailed count per user, served ``recommend_via
= index`` without precomputing (``--precompute none``: each request searches the index, over-fetching
the user's rated items, as ``recflow recommend`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONCURRENCY = (1, 16, 64)


@dataclass
class Result:
    name: str
    concurrency: int
    n: int
    seconds: float
    latencies_ms: np.ndarray
    failures: int
    client_cpu: float
    server_cpu: float
    versions: dict | None = None

    def row(self) -> str:
        p50, p95, p99 = np.percentile(self.latencies_ms, [50, 95, 99]) if len(self.latencies_ms) else (np.nan,) * 3
        return (
            f"| {self.name} | {self.concurrency} | {self.n} | {self.n / self.seconds:,.0f} | {p50:.2f} | {p95:.2f} | {p99:.2f} | {self.failures} | "
            f"{self.client_cpu / self.seconds:.2f} | {self.server_cpu / self.seconds:.2f} |"
        )


HEADER = (
    "| endpoint | conc. | requests | req/s | p50 ms | p95 ms | p99 ms | failed | load gen CPU | server CPU |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children so far."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    except psutil.NoSuchProcess:
        return 0.0


def get_request(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def post_request(path: str, body: dict, port: int) -> bytes:
    data = json.dumps(body).encode()
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data


async def _connection(port: int, requests: list[bytes], latencies: list[float], bodies: list | None, failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"content-length:")
            if at >= 0:
                length = int(lower[at + 15 : lower.find(b"\r\n", at)])
                body = await reader.readexactly(length)
            else:  # chunked
                chunks = []
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    chunks.append(await reader.readexactly(size + 2))
                body = b"".join(c[:-2] for c in chunks)
            latencies.append((time.perf_counter() - start) * 1e3)
            if status != 200:
                failures[0] += 1
            if bodies is not None:
                bodies.append(body)
    finally:
        writer.close()


async def _load(port: int, requests: list[bytes], concurrency: int, keep_bodies: bool) -> tuple[float, list[float], list, int]:
    shares = [requests[i::concurrency] for i in range(concurrency)]
    latencies: list[float] = []
    bodies: list | None = [] if keep_bodies else None
    failures = [0]
    start = time.perf_counter()
    await asyncio.gather(*(_connection(port, share, latencies, bodies, failures) for share in shares if share), return_exceptions=True)
    failures[0] += len(requests) - len(latencies)  # a dropped connection leaves its requests unanswered: failed
    return time.perf_counter() - start, latencies, bodies or [], failures[0]


def run_load(name: str, port: int, server_pid: int, requests: list[bytes], concurrency: int, keep_bodies: bool = False) -> tuple[Result, list]:
    import uvloop

    cpu0, scpu0 = time.process_time(), process_cpu(server_pid)
    seconds, latencies, bodies, failures = uvloop.run(_load(port, requests, concurrency, keep_bodies))
    result = Result(name, concurrency, len(requests), seconds, np.array(latencies), failures, time.process_time() - cpu0, process_cpu(server_pid) - scpu0)
    return result, bodies


def wait_healthy(url_port: int, path: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{url_port}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"no answer on {path} within {timeout:g} s")


def start_api(root: Path, dataset: str | None, poll: float, precompute: str) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    args = [sys.executable, "-m", "recflow.cli.main", "api", "--port", str(port), "--poll", str(poll), "--precompute", precompute]
    if dataset:
        args += ["--dataset", dataset]
    started = time.perf_counter()
    proc = subprocess.Popen(args, env={**os.environ, "RECFLOW_HOME": str(root)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_healthy(port, "/health", proc)
    return proc, port, time.perf_counter() - started


def start_mlflow(root: Path, name: str) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    env = {**os.environ, "RECFLOW_HOME": str(root), "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # it execs `uvicorn` from the environment
    args = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion", "--env-manager", "local"]
    args += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_healthy(port, "/ping", proc)
    return proc, port, time.perf_counter() - started


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- the ML-1M (or any recorded) champion ------------------------------------------------------------
def champion_bench(root: Path, dataset: str | None, n: int, swap_to: str | None) -> None:
    from recflow.experiments.serving.resolve import find_champion
    from recflow.retrieval.search import Catalogue

    champion = find_champion(root, dataset)
    record = json.loads((root / champion["record"]).read_text())
    cat = Catalogue(root / record["catalogue"])
    rng = np.random.default_rng(0)
    warm = cat.user_ids[cat.user_train_count > 0]
    users = rng.choice(warm, n)
    api, port, api_start = start_api(root, record["dataset"], poll=0.2, precompute="auto")
    import httpx

    meta = httpx.get(f"http://127.0.0.1:{port}/metadata").json()
    print(
        f"\nrecflow api: {meta['registered_model']} v{meta['version']} = {meta['model']} (run {meta['run_id']}, via {meta['recommend_via']}), "
        f"{meta['catalogue']['users']} users x {meta['catalogue']['items']} items; ready in {api_start:.1f} s "
        f"(load {meta['load_seconds']:.1f} s, {meta['precomputed']['users']} users' top-{meta['precomputed']['depth']} precomputed)"
    )
    results = []
    histories = [cat.item_ids[cat.seen(int(cat.user_index(int(u))))][:30].tolist() for u in users[:200]]
    try:
        plans = {
            "GET /recommend": [get_request(f"/recommend?user_id={u}&k=10", port) for u in users],
            "GET /recommend (uncached: exclude_seen=false)": [get_request(f"/recommend?user_id={u}&k=10&exclude_seen=false", port) for u in users[: n // 4]],
            "POST /recommend (fold-in)": [post_request("/recommend", {"items": histories[i % len(histories)], "k": 10}, port) for i in range(n // 4)]
            if meta["folds_in_history"]
            else [],
            "POST /recommend/batch (16 users)": [
                post_request("/recommend/batch", {"user_ids": np.resize(users[i:], 16).tolist(), "k": 10}, port) for i in range(n // 8)
            ],
        }
        if meta.get("similar_model"):
            plans["GET /similar"] = [get_request(f"/similar?item_id={i}&k=10", port) for i in rng.choice(cat.item_ids, n // 4)]
        for name, requests in plans.items():
            if not requests:
                continue
            for c in CONCURRENCY:
                run_load(name, port, api.pid, requests[: min(len(requests), 200)], c)  # warm-up
                results.append(run_load(name, port, api.pid, requests, c)[0])
        if swap_to:
            results.append(swap_under_load(root, champion, swap_to, port, api.pid, users, n * 10))
        swaps = httpx.get(f"http://127.0.0.1:{port}/health").json()["swaps"]
        print(f"swaps completed during the swap run: {swaps}")
    finally:
        stop(api)

    mlflow_results = []
    try:
        server, mport, mstart = start_mlflow(root, champion["registered_model"])
        print(f"mlflow models serve: models:/{champion['registered_model']}@champion, ready in {mstart:.1f} s")
        body = [post_request("/invocations", {"dataframe_records": [{"user_id": int(u)}], "params": {"k": 10}}, mport) for u in users]
        try:
            for c in CONCURRENCY:
                run_load("mlflow serve", mport, server.pid, body[:50], c)
                mlflow_results.append(run_load("mlflow serve /invocations (user_id)", mport, server.pid, body[: max(200, n // 8)], c)[0])
        finally:
            stop(server)
    except Exception as exc:  # report what failed, keep the api's table
        print(f"mlflow models serve failed: {type(exc).__name__}: {exc}")
    print()
    print(HEADER)
    for r in results + mlflow_results:
        print(r.row())
    ours = {r.concurrency: r for r in results if r.name == "GET /recommend"}
    for r in mlflow_results:
        print(
            f"c={r.concurrency}: recflow api GET /recommend {ours[r.concurrency].n / ours[r.concurrency].seconds:,.0f} req/s = "
            f"{(ours[r.concurrency].n / ours[r.concurrency].seconds) / (r.n / r.seconds):.1f}x mlflow models serve ({r.n / r.seconds:,.0f} req/s)"
        )
    for r in results:
        if r.versions:
            print(f"swap under load: {r.n} requests at c={r.concurrency}, {r.failures} failed, answers per version {r.versions}")


def swap_under_load(root: Path, champion: dict, swap_to: str, port: int, pid: int, users: np.ndarray, n: int) -> Result:
    """GET /recommend at c=16 while the champion record flips between its version and the run ``swap_to``'s every 0.5 s."""
    import threading

    from recflow.experiments.serving.records import champions_dir, runs_dir
    from recflow.runtime.store import write_json_atomic

    path = champions_dir(root) / f"{champion['registered_model']}.json"
    other_record = json.loads((runs_dir(root) / f"{swap_to}.json").read_text())
    other = {**champion, "run_id": swap_to, "record": str((runs_dir(root) / f"{swap_to}.json").relative_to(root)), "model": other_record["best"]}
    other["version"] = int(champion["version"]) + 1000  # a version number of its own, so every answer says which one it came from
    stop_flag = threading.Event()

    import httpx

    def flip():
        """Promote the other version, wait until the server answers with it, hold 0.3 s, promote back; until the load ends."""
        states = [other, champion]
        i = 0
        while not stop_flag.is_set():
            target = states[i % 2]
            write_json_atomic(path, target)
            i += 1
            while not stop_flag.is_set() and httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=10).json()["version"] != target["version"]:
                time.sleep(0.05)
            stop_flag.wait(0.3)
        write_json_atomic(path, champion)

    flipper = threading.Thread(target=flip, daemon=True)
    requests = [get_request(f"/recommend?user_id={u}&k=10", port) for u in np.resize(users, n)]
    flipper.start()
    try:
        result, bodies = run_load("GET /recommend during swaps", port, pid, requests, 16, keep_bodies=True)
    finally:
        stop_flag.set()
        flipper.join()
    versions: dict = {}
    for body in bodies:
        try:
            v = json.loads(body)["version"]
        except (ValueError, KeyError):
            v = "unparsed"
        versions[v] = versions.get(v, 0) + 1
    result.versions = versions
    return result


# -- the 25M shape through the index ---------------------------------------------------------------
def build_shape_root(root: Path, n_users: int = 162_541, n_items: int = 59_047, dim: int = 64, mean_seen: int = 153) -> None:
    """A recorded champion of ML-25M's shape (see the module docstring); idempotent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recflow.retrieval.build import build_serving_indexes
    from recflow.retrieval.index import TuningGrid
    from recflow.runtime.store import write_json_atomic
    from recflow.utils.numeric import normalise_rows

    if (root / "serving" / "champions" / "recflow-shape-25m.json").is_file():
        return
    rng = np.random.default_rng(0)
    # low-rank vectors plus noise: the neighbourhood structure of learned embeddings, not isotropic noise
    basis = rng.standard_normal((16, dim)).astype(np.float32)
    V = normalise_rows((rng.standard_normal((n_items, 16)).astype(np.float32) @ basis) + 0.3 * rng.standard_normal((n_items, dim)).astype(np.float32))
    U = normalise_rows((rng.standard_normal((n_users, 16)).astype(np.float32) @ basis) + 0.3 * rng.standard_normal((n_users, dim)).astype(np.float32))
    counts = np.clip(rng.lognormal(np.log(mean_seen) - 0.6, 1.1, n_users).astype(np.int64), 20, 5000)
    popularity = rng.zipf(1.3, n_items).astype(np.float64)
    p = popularity / popularity.sum()
    # popularity-weighted draws per user, repeats within a user dropped (so counts end a little lower)
    pairs = np.repeat(np.arange(n_users, dtype=np.int64), counts) * n_items + rng.choice(n_items, int(counts.sum()), p=p)
    pairs = np.unique(pairs)
    users_of, seen = pairs // n_items, (pairs % n_items).astype(np.int32)
    counts = np.bincount(users_of, minlength=n_users)
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    cat = root / "catalogue" / "shape"
    cat.mkdir(parents=True, exist_ok=True)
    item_ids, user_ids = np.arange(1, n_items + 1), np.arange(1, n_users + 1)
    train_count = np.bincount(seen, minlength=n_items)
    titles = [f"Movie {i}" for i in item_ids]
    pq.write_table(pa.table({"item_idx": np.arange(n_items), "item_id": item_ids, "title": titles, "train_count": train_count}), cat / "items.parquet")
    pq.write_table(pa.table({"user_idx": np.arange(n_users), "user_id": user_ids, "train_count": counts}), cat / "users.parquet")
    np.save(cat / "seen_indptr.npy", indptr)
    np.save(cat / "seen_items.npy", seen)

    class Vectors:  # what build_serving_indexes reads of a model with dot factors
        name = "two_tower_shape"
        n_users, n_items = len(U), len(V)

        @staticmethod
        def vector_spaces():
            from recflow.models.base import VectorSpace

            return [VectorSpace("items", "item"), VectorSpace("users", "user")]

        item_embeddings = staticmethod(lambda space=None: V)
        user_embeddings = staticmethod(lambda: U)
        dot_factors = staticmethod(lambda: (U, V, np.ones(len(V), bool)))
        score = staticmethod(lambda users: U[users] @ V.T)

    index = root / "index" / "shape"
    grid = TuningGrid(kinds=("hnswlib",), n_queries=500, latency_queries=200, ef_search=(32, 64, 128, 256), hnsw_m=(16,), build_threads=2)
    summary = build_serving_indexes(Vectors(), item_ids, user_ids, grid, index)
    write_json_atomic(index / "summary.json", summary)
    model = root / "train" / "shape" / "model"
    model.mkdir(parents=True, exist_ok=True)
    record = {
        "dataset": "shape-25m",
        "registered_model": "recflow-shape-25m",
        "run_id": "shape",
        "catalogue": "catalogue/shape",
        "metric": "recall_at_10",
        "protocol": {},
        "best": "two_tower_shape",
        "similar": "two_tower_shape",
        "models": {
            "two_tower_shape": {
                "run_id": None,
                "model": "train/shape/model",
                "index": "index/shape",
                "recommend_via": summary["recommend_via"],
                "similar": True,
                "metrics": {},
            }
        },
        "created": "synthetic",
    }
    write_json_atomic(root / "serving" / "runs" / "shape.json", record)
    write_json_atomic(
        root / "serving" / "champions" / "recflow-shape-25m.json",
        {"registered_model": "recflow-shape-25m", "version": 1, "run_id": "shape", "record": "serving/runs/shape.json", "model": "two_tower_shape"},
    )
    items = summary["spaces"]["items"]
    print(f"built the 25M-shape root in {root}: {items['kind']} index, {items['metrics']}, via {summary['recommend_via']}")


def shape_bench(root: Path, n: int) -> None:
    t0 = time.perf_counter()
    build_shape_root(root)
    print(f"(shape root ready in {time.perf_counter() - t0:.0f} s)")
    api, port, started = start_api(root, "shape-25m", poll=30, precompute="none")
    import httpx

    meta = httpx.get(f"http://127.0.0.1:{port}/metadata").json()
    shape = f"{meta['catalogue']['users']} users x {meta['catalogue']['items']} items"
    print(f"recflow api: {shape} via {meta['recommend_via']}, no precompute; ready in {started:.1f} s")
    users = np.random.default_rng(1).integers(1, meta["catalogue"]["users"] + 1, n)
    results = []
    try:
        requests = [get_request(f"/recommend?user_id={u}&k=10", port) for u in users]
        similar = [get_request(f"/similar?item_id={i}&k=10", port) for i in users % meta["catalogue"]["items"] + 1]
        for name, plan in (("GET /recommend (index)", requests), ("GET /similar (index)", similar)):
            for c in CONCURRENCY:
                run_load(name, port, api.pid, plan[:100], c)
                results.append(run_load(name, port, api.pid, plan, c)[0])
    finally:
        stop(api)
    print()
    print(HEADER)
    for r in results:
        print(r.row())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="whose champion (default: the only one)")
    parser.add_argument("--requests", type=int, default=4000, help="requests per endpoint and concurrency (GET /recommend; others a fraction)")
    parser.add_argument("--swap-to", default=None, help="a pipeline run id whose record the swap under load flips the champion to and back")
    parser.add_argument("--shape", choices=["25m"], default=None, help="the synthetic 25M-shape root, through the index")
    parser.add_argument("--shape-root", type=Path, default=Path("/tmp/recflow-bench-api-25m"))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs ({_cpu_name()}); load average {_load_average()} at start")
    if args.shape:
        shape_bench(args.shape_root, args.requests)
    else:
        from recflow.runtime.store import artifacts_root

        champion_bench(artifacts_root(), args.dataset, args.requests, args.swap_to)
    print(f"load average {_load_average()} at the end")


def _load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    main()
