"""Load test of ``imagefit serve``: requests/s and latency with and without micro-batching.

Starts one server subprocess per mode on 127.0.0.1 (ports chosen by the OS):
micro-batching (``--window-ms``) with each ``--max-batch`` limit, and no
batching (window 0). Then sends ``--requests`` POST /predict requests per mode,
one JPEG each, from ``--concurrency`` concurrent clients (httpx.AsyncClient),
the modes taking turns in ``--rounds`` rounds. Loopback only, bounded in count
and in time (``--max-seconds`` per mode): it stops by itself. Client and
server share the machine's cores, as they would on one box.

Writes the "Serving" section of BENCHMARKS.md.
Usage: ``python bench/load_serve.py [--run RUN] [--requests 2000] [--concurrency 32]``
(without ``--run``, a lite0 model is trained on the bundled sample set first;
``--max-batch 4,8,16`` compares several batch limits).

``--flood`` instead measures the server under issue 17's hostile load: ``--flood-requests``
concurrent requests of ``--flood-files`` solid PNGs of ``--flood-side`` pixels square (default:
3 x 32 x 7990x7990, each image under the 64 MP limit), while one photo request at a time
measures latency; the server's resident memory is sampled before, at its peak and after.
Writes the "Serving under a flood" section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, provenance, update_section

SAMPLE = ROOT / "src" / "imagefit" / "sample_data"


@dataclass
class Result:
    """One mode's figures."""

    mode: str
    window_ms: float
    max_batch: int
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    model_calls: int = 0
    images: int = 0
    model_busy_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    stopped_early: bool = False

    def pct(self, q: float) -> float:
        """Latency percentile in ms."""
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def mean_batch(self) -> float:
        return self.images / self.model_calls if self.model_calls else float("nan")

    def per_request_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.sent if self.sent else float("nan")

    def line(self) -> str:
        return (
            f"{self.mode:>10} (max batch {self.max_batch:>2}): {self.ok}/{self.sent} ok in {self.seconds:.1f} s = {self.rps:.1f} req/s; "
            f"latency p50 {self.pct(50):.0f} ms, p95 {self.pct(95):.0f} ms, p99 {self.pct(99):.0f} ms; "
            f"errors {self.n_errors} {self.errors or ''}; mean batch {self.mean_batch:.1f}; model busy "
            f"{100 * self.model_busy_s / self.seconds:.0f}% of the time; CPU per request: server "
            f"{self.per_request_ms(self.server_cpu_s):.1f} ms, client {self.per_request_ms(self.client_cpu_s):.1f} ms"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# --engines: what each server's inference runs in (the environment overrides every command alike).
ENGINE_ENV = {
    "default": {},
    "fp32": {"IMAGEFIT_ENGINE": "onnx", "IMAGEFIT_PRECISION": "fp32"},
}


def engine_label(name: str) -> str:
    """``default (openvino bf16)`` / ``fp32 (onnx fp32)``: the engine a server of this name runs."""
    from imagefit.engines.cpu import default_cpu_engine

    kind, precision = default_cpu_engine() if name == "default" else ("onnx", "fp32")
    return f"{name} ({kind} {precision})"


def start_server(
    run: Path, window_ms: float, max_batch: int, log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server in a subprocess (``env``: extra environment); returns it and its base URL."""
    code = (
        "from imagefit.serve.app import ServeSettings, serve\n"
        f"serve(ServeSettings({str(run)!r}, batch_window_ms={window_ms!r}, max_batch={max_batch!r}),"
        " host='127.0.0.1', port=0, log_level='info', access_log=False)\n"
    )
    fh = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text(errors='replace')}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def warm_up(client: object, photos: list[tuple[str, bytes, str]], concurrency: int) -> None:
    """Not counted: connections, first batches, allocator growth."""
    await asyncio.gather(*(client.post("/predict", files={"files": photos[i % len(photos)]}) for i in range(2 * concurrency)))  # type: ignore[attr-defined]


async def load_round(
    client: object, server_pid: int, photos: list[tuple[str, bytes, str]], n: int, concurrency: int, deadline: float, result: Result
) -> None:
    """Send ``n`` requests from ``concurrency`` clients (or until ``deadline``); add the figures to ``result``."""
    import httpx

    before = (await client.get("/health")).json()  # type: ignore[attr-defined]
    counter = iter(range(result.sent, result.sent + n))
    client_cpu, server_cpu = time.process_time(), cpu_seconds(server_pid)
    start = time.perf_counter()

    async def worker() -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                result.stopped_early = True
                return
            t0 = time.perf_counter()
            result.sent += 1
            try:
                r = await client.post("/predict", files={"files": photos[i % len(photos)]})  # type: ignore[attr-defined]
            except httpx.HTTPError as exc:
                key = type(exc).__name__
                result.errors[key] = result.errors.get(key, 0) + 1
                continue
            if r.status_code == 200 and r.json()["predictions"]:
                result.ok += 1
                result.latencies.append(time.perf_counter() - t0)
            else:
                key = str(r.status_code)
                result.errors[key] = result.errors.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds += time.perf_counter() - start
    result.client_cpu_s += time.process_time() - client_cpu
    result.server_cpu_s += cpu_seconds(server_pid) - server_cpu
    after = (await client.get("/health")).json()  # type: ignore[attr-defined]
    result.model_calls += after["model_calls"] - before["model_calls"]
    result.images += after["images"] - before["images"]
    result.model_busy_s += after["model_busy_s"] - before["model_busy_s"]


async def load(
    servers: list[tuple[str, int, Result]], photos: list[tuple[str, bytes, str]], n: int, rounds: int, concurrency: int, max_seconds: float
) -> None:
    """``n`` requests per server, sent in ``rounds`` interleaved rounds.

    Interleaving spreads any background load on the machine evenly over the
    modes, instead of penalizing whichever mode happened to run during it.
    """
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0, trust_env=False) for url, _, _ in servers]
    try:
        for c in clients:
            await warm_up(c, photos, concurrency)
        deadline = time.perf_counter() + max_seconds * len(servers)
        per_round = -(-n // rounds)
        for k in range(rounds):
            order = list(range(len(servers)))
            order = order[k % len(order) :] + order[: k % len(order)]  # rotate who goes first
            for j in order:
                _, pid, res = servers[j]
                todo = min(per_round, n - res.sent)
                if todo > 0:
                    await load_round(clients[j], pid, photos, todo, concurrency, deadline, res)
    finally:
        for c in clients:
            await c.aclose()


def solid_png(side: int) -> bytes:
    """A valid grayscale PNG of ``side x side`` black pixels, a few dozen kB, built row by row."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def flood(url: str, pid: int, photo: tuple[str, bytes, str], big: bytes, requests: int, files: int) -> dict[str, object]:
    """Big requests in flight while photo requests go one after another; returns what was seen."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=300.0, trust_env=False) as c:
        await c.post("/predict", files={"files": photo})
        before, peak, photo_ms, photo_codes = rss_mb(pid), 0.0, [], []
        parts = [("files", (f"big{i}.png", big, "image/png")) for i in range(files)]
        jobs = [asyncio.create_task(c.post("/predict", files=parts)) for _ in range(requests)]
        start = time.perf_counter()
        while not all(j.done() for j in jobs) or time.perf_counter() - start < 2.0:
            t = time.perf_counter()
            r = await c.post("/predict", files={"files": photo})
            photo_ms.append(1000 * (time.perf_counter() - t))
            photo_codes.append(r.status_code)
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.1)
        big_codes = [(await j).status_code for j in jobs]
        flood_s = time.perf_counter() - start
        await asyncio.sleep(2.0)
        return {
            "before": before,
            "peak": peak,
            "after": rss_mb(pid),
            "photo_ms": photo_ms,
            "photo_codes": photo_codes,
            "big_codes": big_codes,
            "flood_s": flood_s,
        }


def main_flood(run: Path, tmp: Path, args: argparse.Namespace) -> None:
    photo = next((p.name, p.read_bytes(), "image/jpeg") for p in sorted((SAMPLE / "val").rglob("*.jpg")))
    big = solid_png(args.flood_side)
    rows = []
    for files in (args.flood_files, 2):  # the flood (refused from headers), then one within the budget
        proc, url = start_server(run, args.window_ms, 4, tmp / f"server-flood-{files}.log")
        try:
            res = asyncio.run(flood(url, proc.pid, photo, big, args.flood_requests, files))
        finally:
            stop_server(proc)
        ms = res["photo_ms"]
        codes = {c: res["big_codes"].count(c) for c in sorted(set(res["big_codes"]))}  # type: ignore[attr-defined]
        rows.append(
            f"| {args.flood_requests} x {files} | {', '.join(f'{k}: {v}' for k, v in codes.items())} | {res['flood_s']:.1f} | "
            f"{len(ms)} ({sum(c == 200 for c in res['photo_codes'])} ok) | {np.median(ms):.0f} | {max(ms):.0f} | "
            f"{res['before']:.0f} | {res['peak']:.0f} | {res['after']:.0f} |"
        )
        print(rows[-1], flush=True)
    body = (
        f"Issue 17's hostile load: concurrent requests of solid {args.flood_side}x{args.flood_side} PNGs "
        f"({len(big) // 1024} kB each on the wire, {args.flood_side**2 / 1e6:.1f} MP decoded), default settings, one uvicorn worker; "
        "one photo request at a time (a 500x375 JPEG) runs throughout and 2 s after. Memory: the server's resident set (MiB).\n\n"
        "| big requests x images | big answers | flood s | photo requests | photo p50 ms | photo max ms | RSS before | RSS peak | RSS 2 s after |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + f"\n\n{provenance()}"
    )
    print(body)
    if not args.no_write:
        update_section("serving-flood", "Serving under a flood", body)


def engine_ratio(results: list[Result], engines: list[str], per_engine: int) -> str:
    """The default engine's best requests/s against the fp32 engine's, when both ran (issue 19: >= 1.4x)."""
    if "default" not in engines or "fp32" not in engines:
        return ""
    best = {e: max(results[i * per_engine : (i + 1) * per_engine], key=lambda r: r.rps) for i, e in enumerate(engines)}
    d, f = best["default"], best["fp32"]
    return (
        f"Engines side by side: the default engine's best mode ({d.mode}, {d.rps:.1f} requests/s) serves "
        f"{d.rps / f.rps:.2f}x the requests/s of the fp32 engine's best ({f.mode}, {f.rps:.1f}); target (issue 19) >= 1.4x "
        "with 0 errors.\n\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="Run folder (default: train lite0 on the bundled sample set).")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--window-ms", type=float, default=5.0)
    ap.add_argument("--max-batch", default="4,8,16", help="Comma-separated max batch sizes to try with batching.")
    ap.add_argument("--rounds", type=int, default=8, help="Interleaved rounds the requests of each mode are split into.")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="Time budget per mode; past it, the run stops whatever was sent.")
    ap.add_argument("--engines", default="default", help="Comma-separated: default (this CPU's engine), fp32 (ONNX Runtime fp32).")
    ap.add_argument("--no-write", action="store_true", help="Print only; leave BENCHMARKS.md alone.")
    ap.add_argument("--flood", action="store_true", help="Measure photo latency and memory under a flood of huge PNGs instead.")
    ap.add_argument("--flood-requests", type=int, default=3)
    ap.add_argument("--flood-files", type=int, default=32)
    ap.add_argument("--flood-side", type=int, default=7990)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("IMAGEFIT_CACHE", str(Path(tmp) / "cache"))
        run = args.run
        if run is None:
            import imagefit

            print("training lite0 on the bundled sample set...", flush=True)
            run = imagefit.train(SAMPLE / "train", val=SAMPLE / "val", out=Path(tmp) / "run", seed=0).path
        if args.flood:
            main_flood(Path(run), Path(tmp), args)
            return
        photos = [(p.name, p.read_bytes(), "image/jpeg") for p in sorted((SAMPLE / "val").rglob("*.jpg"))]
        sizes = [len(p[1]) for p in photos]
        engines = [e for e in str(args.engines).split(",") if e]
        for e in engines:
            if e not in ENGINE_ENV:
                raise SystemExit(f"--engines received {e!r}; allowed: {', '.join(ENGINE_ENV)}")
        batching = [("batched", args.window_ms, int(mb)) for mb in str(args.max_batch).split(",")] + [("unbatched", 0.0, 1)]
        labels = {e: engine_label(e) for e in engines}
        modes = [(f"{labels[e]} {m}" if len(engines) > 1 else m, w, mb, e) for e in engines for m, w, mb in batching]
        procs, servers = [], []
        load_before = os.getloadavg()[0]
        try:
            # All servers are started first; an idle one costs memory, not CPU.
            for mode, window, max_batch, eng in modes:
                log = Path(tmp) / f"server-{eng}-{mode.split()[-1]}-{max_batch}.log"
                proc, url = start_server(run, window, max_batch, log, ENGINE_ENV[eng])
                procs.append(proc)
                servers.append((url, proc.pid, Result(mode, window, max_batch)))
            asyncio.run(load(servers, photos, args.requests, args.rounds, args.concurrency, args.max_seconds))
        finally:
            for proc in procs:
                stop_server(proc)
        load_after = os.getloadavg()[0]
        results = [res for _, _, res in servers]
        for res in results:
            print(res.line(), flush=True)
        meta = json.loads((Path(run) / "imagefit.json").read_text())

    rows = "\n".join(
        f"| {r.mode} | {r.window_ms:g} | {r.max_batch} | {r.ok}/{r.sent} | {r.rps:.1f} | {r.pct(50):.0f} | {r.pct(95):.0f} | "
        f"{r.pct(99):.0f} | {r.n_errors} | {r.mean_batch:.1f} | {100 * r.model_busy_s / r.seconds:.0f}% | "
        f"{r.per_request_ms(r.server_cpu_s):.1f} / {r.per_request_ms(r.client_cpu_s):.1f} |"
        for r in results
    )
    per_engine = len(results) // len(engines)
    u = results[per_engine - 1]
    best = max(results[: per_engine - 1], key=lambda r: r.rps)
    body = (
        f"`POST /predict`, one JPEG per request ({len(photos)} sample photos cycled, {min(sizes) // 1024}-{max(sizes) // 1024} kB, "
        f"{meta['backbone']['name']} + linear head), {args.requests} requests per mode from {args.concurrency} concurrent "
        f"httpx clients over loopback; one uvicorn worker; engines: {', '.join(labels.values())}. The client runs on the same cores as the server. "
        f"Modes take turns in {args.rounds} interleaved rounds, so background load hits them alike "
        f"(1-min load average {load_before:.1f} before, {load_after:.1f} after, this load test included). "
        "Model busy: share of the time the inference thread was in a model call.\n\n"
        "| mode | window ms | max batch | ok/sent | requests/s | p50 ms | p95 ms | p99 ms | errors | images/model call | model busy | CPU ms/request server / client |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"{rows}\n\n"
        f"Micro-batching (max batch {best.max_batch}) gives {best.rps / u.rps:.2f}x the throughput of one model call per request"
        f" and p95 latency {best.pct(95):.0f} ms instead of {u.pct(95):.0f} ms. The model is busy nearly all the time in every mode,"
        " so throughput is the model's: batching helps exactly as much as batched inference is cheaper per image."
        f" Latency at this concurrency is mostly queueing: {args.concurrency} requests in flight divided by the throughput.\n\n"
        f"{engine_ratio(results, engines, per_engine)}"
        f"{provenance()}"
    )
    print(body)
    if not args.no_write:
        update_section("serving", "Serving", body)
        print(f"updated the Serving section of {ROOT / 'BENCHMARKS.md'}")
    if any(r.n_errors or r.stopped_early for r in results):
        raise SystemExit("errors or an early stop: see above")


if __name__ == "__main__":
    main()
