"""The HTTP service under load: bench/results/<name>.json, <name>_table.md and <name>_page.png (--name serving).

    python bench/serving.py --model_dir out/demo_ner
    python bench/serving.py --model_dir out/rt_polarity_small --configurations w1,w2,w1-batch8-0ms \
        --name serving_rt_polarity_small

For each configuration (1 and 2 workers; micro-batching off, and on with and without a wait) it starts
run_predict_onnx.py --serve on 127.0.0.1 and sends the task's test sentences with a bounded asynchronous client at
each --concurrency: --requests requests per level, closed loop (each client sends its next request on its own
keep-alive connection when its answer arrives), then the level ends by itself. It records client-side
p50/p90/p99 latency and requests/s, the CPU seconds the service's processes and the client used, and whether every
answer equals the file loop's. At concurrency 1 of the first configuration the in-process batch-1 loop
(OnlinePredictor.predict_line, the file loop's path) answers the same requests, interleaved request by request
with the HTTP ones: the difference is what HTTP costs per request.

The client is a minimal HTTP/1.1 client on asyncio streams and uvloop (KeepAliveConnection): httpx's async client
spends more time of its own per request than the service's whole HTTP stack (its figure at concurrency 1 is
recorded beside, as "httpx_async_client_ms"), and on 2 cores the client's CPU is taken from the service.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `python bench/...`
import xdistil  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)

import asyncio
import json
import logging as std_logging
import os
import socket
import tempfile
import time

import numpy as np
import uvloop
from absl import app, flags, logging

from bench.common import RESULTS_DIR, load_average, write_result

FLAGS = flags.FLAGS
# name: (run_predict_onnx.py flags, workers)
CONFIGURATIONS = {
    "w1": ([], 1),
    "w2": (["--workers=2"], 2),
    "w1-batch8-2ms": (["--max_batch_size=8", "--max_delay_ms=2"], 1),
    "w1-batch8-0ms": (["--max_batch_size=8", "--max_delay_ms=0"], 1),
    "w2-batch8-0ms": (["--workers=2", "--max_batch_size=8", "--max_delay_ms=0"], 2),
}


def define_flags():
    flags.DEFINE_string("model_dir", None, "Distilled model directory (exported, or it is exported first).")
    flags.DEFINE_string("test_file", None, "Labeled file whose texts are the requests (default: the task's test.tsv).")
    flags.DEFINE_integer("requests", 600, "Requests per concurrency level (the test texts in turn).")
    flags.DEFINE_list("concurrency", ["1", "2", "4", "16"], "Concurrent clients per level.")
    flags.DEFINE_list("configurations", list(CONFIGURATIONS), "Which configurations to run, by name.")
    flags.DEFINE_integer("warmup", 20, "Untimed requests before each configuration's levels.")
    flags.DEFINE_string("page_text", None, "Sentence typed into the page for the screenshot (default: the first "
                                           "request).")
    flags.DEFINE_string("name", "serving", "Results name: bench/results/<name>.json.")
    flags.DEFINE_string("note", None, "What else ran on the machine meanwhile, in words (kept in the results).")
    flags.mark_flag_as_required("model_dir")


def process_tree(root_pid: int) -> dict[int, list[str]]:
    """The /proc/<pid>/stat fields (after the command name) of a process and its live descendants, by pid."""
    children, stats = {}, {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = fields
    tree, stack = {}, [root_pid]
    while stack:
        pid = stack.pop()
        if pid in stats:
            tree[pid] = stats[pid]
        stack += children.get(pid, [])
    return tree


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    ticks = sum(int(fields[11]) + int(fields[12]) for fields in process_tree(root_pid).values())  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(root_pid: int) -> dict:
    """Resident memory (MB) of a process and of each of its live descendants."""
    page_mb = os.sysconf("SC_PAGE_SIZE") / 1e6
    return {pid: round(int(fields[21]) * page_mb, 1) for pid, fields in process_tree(root_pid).items()}


def percentiles(values) -> dict:
    p50, p90, p99 = np.percentile(np.asarray(values, np.float64), [50, 90, 99]).tolist()
    return {"p50": p50, "p90": p90, "p99": p99, "mean": float(np.mean(values))}


class KeepAliveConnection:
    """One keep-alive HTTP/1.1 connection: requests with a Content-Length body, answers read by Content-Length."""

    def __init__(self, reader, writer, host: str):
        self.reader, self.writer, self.host = reader, writer, host.encode()

    @classmethod
    async def open(cls, url: str):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, host)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
        """(status, headers with lower-case names, body)."""
        self.writer.write(b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                          % (method.encode(), path.encode(), self.host, len(body)) + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, await self.reader.readexactly(int(headers["content-length"]))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def model_ms(headers: dict) -> float:
    """The service's own time for the request (its Server-Timing header), in ms."""
    return float(headers["server-timing"].split("dur=")[1])


async def run_level(url: str, bodies: list[bytes], requests: int, concurrency: int, service_pid: int) -> dict:
    """`requests` requests from `concurrency` clients in a closed loop; latencies and what the service answered."""
    latencies, answers, statuses = [0.0] * requests, [None] * requests, [0] * requests
    connections = [await KeepAliveConnection.open(url) for _ in range(concurrency)]
    next_request = 0

    async def one_client(connection):
        nonlocal next_request
        while next_request < requests:
            k, next_request = next_request, next_request + 1
            start = time.perf_counter()
            statuses[k], _, content = await connection.request("POST", "/predict", bodies[k % len(bodies)])
            latencies[k] = (time.perf_counter() - start) * 1000.0
            answers[k] = json.loads(content)["predictions"][0] if statuses[k] == 200 else None

    service_cpu, client_cpu, start = tree_cpu_seconds(service_pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_client(connection) for connection in connections))
    wall = time.perf_counter() - start
    result = {"concurrency": concurrency, "requests": requests, **percentiles(latencies),
              "requests_per_s": requests / wall, "wall_s": wall, "errors": sum(s != 200 for s in statuses),
              "service_cpu_s": tree_cpu_seconds(service_pid) - service_cpu,
              "client_cpu_s": time.process_time() - client_cpu, "answers": answers}
    for connection in connections:
        await connection.close()
    return result


async def httpx_latencies(url: str, bodies: list[bytes], requests: int) -> dict:
    """The same requests one at a time through httpx.AsyncClient: what a common client library adds."""
    import httpx

    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for k in range(requests):
            start = time.perf_counter()
            await client.post("/predict", content=bodies[k % len(bodies)], headers={"content-type": "application/json"})
            latencies.append((time.perf_counter() - start) * 1000.0)
    return percentiles(latencies)


async def overhead_at_concurrency_1(url: str, predictor, lines, bodies, requests: int) -> dict:
    """Each request answered in-process (the file loop's path) and over HTTP, alternating which goes first; the
    per-request cost of HTTP is also the client's latency minus the service's own time (Server-Timing)."""
    in_process, in_process_cpu, http, service_ms, health = [], [], [], [], []
    connection = await KeepAliveConnection.open(url)
    for k in range(requests):
        line_no, line = lines[k % len(lines)]
        for in_process_turn in ((True, False) if k % 2 == 0 else (False, True)):
            start, cpu = time.perf_counter(), time.thread_time()
            if in_process_turn:
                predictor.predict_line(line, line_no, "requests")
                in_process.append((time.perf_counter() - start) * 1000.0)
                in_process_cpu.append((time.thread_time() - cpu) * 1000.0)
            else:
                _, headers, _ = await connection.request("POST", "/predict", bodies[k % len(bodies)])
                http.append((time.perf_counter() - start) * 1000.0)
                service_ms.append(model_ms(headers))
        start = time.perf_counter()
        await connection.request("GET", "/health")
        health.append((time.perf_counter() - start) * 1000.0)
    await connection.close()
    return {"requests": requests, "in_process_batch1_ms": percentiles(in_process),
            "in_process_batch1_thread_cpu_ms": percentiles(in_process_cpu),
            "http_ms": percentiles(http), "service_model_ms": percentiles(service_ms),
            "http_minus_in_process_p50_ms": float(np.median(http) - np.median(in_process)),
            "http_minus_service_model_time_ms": percentiles(np.asarray(http) - np.asarray(service_ms)),
            "health_round_trip_ms": percentiles(health),
            "httpx_async_client_ms": await httpx_latencies(url, bodies, requests)}


def agreement(task, answers, expected: list[str]) -> dict:
    """Shares of the answers that equal the file loop's for the same request: the whole output line (a classifier's
    probability to 6 decimals included), and the labels alone (NER: every tag)."""
    from xdistil.serving.schema import format_answer_line

    lines = [None if answer is None else format_answer_line(task, answer) for answer in answers]
    reference = [expected[k % len(expected)] for k in range(len(answers))]
    return {"same_output_as_file_loop": sum(a == b for a, b in zip(lines, reference)) / len(lines),
            "same_labels_as_file_loop": sum(a is not None and a.split("\t")[0] == b.split("\t")[0]
                                            for a, b in zip(lines, reference)) / len(lines)}


async def measure_configuration(url: str, pid: int, model_dir, lines, expected, predictor, first: bool) -> dict:
    from xdistil.serving.schema import input_for_line

    bodies = [json.dumps({"inputs": input_for_line(model_dir.task, line)}).encode() for _, line in lines]
    await run_level(url, bodies, FLAGS.warmup, 1, pid)
    report = {"levels": []}
    if first:
        report["overhead_at_concurrency_1"] = await overhead_at_concurrency_1(url, predictor, lines, bodies,
                                                                              FLAGS.requests)
    for concurrency in map(int, FLAGS.concurrency):
        result = await run_level(url, bodies, FLAGS.requests, concurrency, pid)
        result.update(agreement(model_dir.task, result.pop("answers"), expected))
        report["levels"].append(result)
        logging.info("c=%d: p50 %.2f ms, p99 %.2f ms, %.0f requests/s, same output / labels as the file loop %.3f / "
                     "%.3f", concurrency, result["p50"], result["p99"], result["requests_per_s"],
                     result["same_output_as_file_loop"], result["same_labels_as_file_loop"])
    return report


def screenshot_page(url: str, text: str) -> dict | None:
    """The page in headless Chromium: a screenshot, what it showed, and the Chromium processes left after it (none
    expected: the browser's process group is ended whole)."""
    from xdistil.serving.browser import chromium_processes, find_chromium, try_page

    chromium = find_chromium()
    if chromium is None:
        logging.warning("no Chromium binary: no screenshot of the page")
        return None
    path = RESULTS_DIR / f"{FLAGS.name}_page.png"
    before = chromium_processes()
    shown = try_page(url, text, path, chromium)
    left = sorted(set(chromium_processes()) - set(before))
    if left:
        logging.error("Chromium processes outlived the page: %s", left)
    return {"file": str(path.relative_to(RESULTS_DIR.parent.parent)), "text": text, "shown": shown,
            "chromium_processes_left": len(left)}


def markdown_table(report: dict) -> str:
    cpu = report["cpu"]
    rows = [f"{report['model_dir']}, {report['requests_per_level']} requests per level; {cpu['cores']} cores "
            f"({cpu['model']}, {', '.join(cpu['flags'])}); load average {report['load_average_before']} before, "
            f"{report['load_average_after']} after." + (f" {report['note']}" if report.get("note") else ""), "",
            "| configuration | service flags | clients | p50 ms | p90 ms | p99 ms | requests/s | "
            "service CPU s / wall s | same output / labels as file loop |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    overhead = next((c["overhead_at_concurrency_1"] for c in report["configurations"].values()
                     if "overhead_at_concurrency_1" in c), None)
    if overhead:
        loop = overhead["in_process_batch1_ms"]
        rows.append(f"| in-process batch-1 loop (the file loop's path) | | 1 | {loop['p50']:.2f} | {loop['p90']:.2f} | "
                    f"{loop['p99']:.2f} | {1000.0 / loop['mean']:.0f} | | 1.000 / 1.000 |")
    for name, configuration in report["configurations"].items():
        for level in configuration["levels"]:
            rows.append(f"| {name} | {' '.join(configuration['flags']) or '(defaults)'} | {level['concurrency']} | "
                        f"{level['p50']:.2f} | {level['p90']:.2f} | "
                        f"{level['p99']:.2f} | {level['requests_per_s']:.0f} | "
                        f"{level['service_cpu_s'] / level['wall_s']:.2f} | {level['same_output_as_file_loop']:.3f} / "
                        f"{level['same_labels_as_file_loop']:.3f} |")
    if overhead:
        rows += ["", f"HTTP per request at concurrency 1 (interleaved with the in-process loop on the same "
                     f"{overhead['requests']} requests): p50 {overhead['http_ms']['p50']:.2f} ms against "
                     f"{overhead['in_process_batch1_ms']['p50']:.2f} ms in-process "
                     f"(+{overhead['http_minus_in_process_p50_ms']:.2f} ms); client latency minus the service's own "
                     f"time (Server-Timing): p50 {overhead['http_minus_service_model_time_ms']['p50']:.2f} ms, p90 "
                     f"{overhead['http_minus_service_model_time_ms']['p90']:.2f} ms."]
    return "\n".join(rows) + "\n"


def run_benchmark() -> dict:
    from xdistil.inference.online import OnlinePredictor
    from xdistil.inference.onnx_serving import cpu_info
    from xdistil.model_dir import ModelDirectory
    from xdistil.serving.service_process import ServiceProcess

    model_dir = ModelDirectory.load(FLAGS.model_dir)
    model_dir.checked_export()  # a stale or unchecked export is never measured
    test_file = FLAGS.test_file or model_dir.default_file("test")
    lines = [(i, model_dir.task.unlabeled_line(example))
             for i, example in enumerate(model_dir.read_labeled(test_file), start=1)]
    predictor = OnlinePredictor.from_onnx(model_dir, model_dir.onnx_path("int8"), intra_op_threads=1)
    expected = [predictor.predict_line(line, line_no, test_file) for line_no, line in lines]
    report = {"benchmark": "serving", "model_dir": FLAGS.model_dir, "test_file": test_file, "kind": model_dir.task.kind,
              "distinct_requests": len(lines), "requests_per_level": FLAGS.requests, "cpu": cpu_info(),
              "client": "HTTP/1.1 on asyncio streams, one keep-alive connection per concurrent client, closed loop",
              "served_model": "int8, one single-thread onnxruntime session per worker",
              "note": FLAGS.note, "load_average_before": load_average(), "configurations": {}}
    with tempfile.TemporaryDirectory(prefix="xdistil-bench-serving-") as logs:
        for index, name in enumerate(FLAGS.configurations):
            service_flags, workers = CONFIGURATIONS[name]
            with ServiceProcess.run_predict_onnx(FLAGS.model_dir, Path(logs) / f"{name}.log",
                                                 *service_flags) as service:
                service.wait_ready(workers)
                memory = tree_rss_mb(service.process.pid)
                logging.info("%s: %s, resident MB by process %s", name, service.url, memory)
                configuration = uvloop.run(measure_configuration(service.url, service.process.pid, model_dir, lines,
                                                                  expected, predictor, first=index == 0))
                if index == 0:
                    report["page"] = screenshot_page(service.url, FLAGS.page_text or lines[0][1])
            report["configurations"][name] = {**configuration, "flags": service_flags, "workers": workers,
                                              "resident_mb_by_process": memory}
    report["load_average_after"] = load_average()
    write_result(RESULTS_DIR / f"{FLAGS.name}.json", report)
    (RESULTS_DIR / f"{FLAGS.name}_table.md").write_text(markdown_table(report))
    return report


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    std_logging.getLogger("httpx").setLevel(std_logging.WARNING)  # not a line per request
    report = run_benchmark()
    overhead = report["configurations"][FLAGS.configurations[0]].get("overhead_at_concurrency_1")
    if overhead:
        logging.info("HTTP at concurrency 1: p50 %.2f ms vs in-process %.2f ms; per request, client latency minus the "
                     "service's own time: p50 %.3f ms", overhead["http_ms"]["p50"],
                     overhead["in_process_batch1_ms"]["p50"], overhead["http_minus_service_model_time_ms"]["p50"])
    print(markdown_table(report))


if __name__ == "__main__":
    define_flags()
    app.run(main)
