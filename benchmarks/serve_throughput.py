"""End-to-end serving throughput through Mosquitto vs the raw batched model and a naive consumer.

Run: ECGWATCH_DATA_DIR=../shared/data python -m benchmarks.serve_throughput [--beats 4000]

All three are measured in this one run on the same machine and printed with their ratios. They run back to
back in several rounds and each ratio is the median of the rounds' ratios: on a shared machine the speed
drifts by 10% over a minute, and a ratio of two figures taken a minute apart measures that drift as much as
the daemon. The daemon is a real ``ecgwatch serve`` process (its peak resident memory is read from /proc);
the naive consumer is a process of its own too, on a broker of its own. Load generator and collector are
Mosquitto's C clients (``mosquitto_pub -l``, ``mosquitto_sub``), so the measured Python process shares the CPU
only with the broker and those cheap clients, as it would with watches and subscribers on other machines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._common import median_seconds, report
from ecgwatch import artifact
from ecgwatch.datasets import load_ecg5000
from ecgwatch.demo.brokers import BrokerAddress, free_port, mosquitto
from ecgwatch.scorer import Scorer

PUBLISHERS = 4  # parallel mosquitto_pub processes, one device topic each


def payload_lines(beats: np.ndarray, n: int) -> list[bytes]:
    return [json.dumps({"seq": i, "samples": beats[i % len(beats)].round(5).tolist()}).encode() for i in range(n)]


@dataclass
class Collector:
    """``mosquitto_sub`` printing each score with its arrival time (%U) into a file; exits after ``count``.

    A file, not a pipe: nobody reads a pipe while the paced feed runs, so after 64 KiB mosquitto_sub would
    block on stdout and every later score would look seconds late (it did: "4.8 s" p50 at half capacity).
    """

    process: subprocess.Popen[bytes]
    output: IO[str]

    def wait(self, timeout: float) -> str:
        self.process.wait(timeout)
        with self.output:
            self.output.seek(0)
            return self.output.read()


def start_collector(broker: BrokerAddress, count: int) -> Collector:
    command = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", "ecg/+/score"]
    output = tempfile.TemporaryFile("w+")  # noqa: SIM115 - Collector.wait reads and closes it
    process = subprocess.Popen([*command, "-C", str(count), "-F", "%U %p"], stdout=output)
    time.sleep(1.0)  # mosquitto_sub has no "subscribed" signal; a second is ample on localhost
    return Collector(process, output)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a running process, from /proc (all its threads)."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def feed(publishers: list[subprocess.Popen[bytes]], lines: list[bytes], rate: float | None) -> None:
    """Hand the lines to the publishers round-robin: all at once, or paced at ``rate`` lines per second."""
    sent, started = 0, time.monotonic()
    while sent < len(lines):
        due = len(lines) if rate is None else min(len(lines), int((time.monotonic() - started) * rate) + 1)
        for i in range(sent, due):
            publishers[i % len(publishers)].stdin.write(lines[i] + b"\n")  # type: ignore[union-attr]
        for publisher in publishers:
            publisher.stdin.flush()  # type: ignore[union-attr]
        sent = due
        time.sleep(0.005)
    for publisher in publishers:
        publisher.stdin.close()  # type: ignore[union-attr]


def blast(
    broker: BrokerAddress,
    lines: list[bytes],
    consumer: int,
    timeout: float,
    rate: float | None = None,
    kind: str = "beat",
    scores: int | None = None,
    device: str = "watch",
) -> dict[str, float]:
    """Publish every line (as fast as the C clients go, or at ``rate``); rate from first publish to last score.

    Line i goes to device ``i mod PUBLISHERS`` on ``ecg/<device>-<k>/<kind>``, in order. The rate counts
    ``scores`` score events (default: one per line; a strip causes one per beat found in it). Also the CPU
    seconds each party spent meanwhile: the consumer under test, the broker, and the C clients (reaped inside
    this function, so they are exactly the children's rusage delta).
    """
    expected = scores or len(lines)
    collector = start_collector(broker, expected)
    command = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-M", "1000", "-l"]
    cpu_before = (cpu_seconds(consumer), cpu_seconds(broker.pid), children_cpu_seconds())
    started = time.time()
    publishers = [
        subprocess.Popen([*command, "-t", f"ecg/{device}-{k}/{kind}"], stdin=subprocess.PIPE) for k in range(PUBLISHERS)
    ]
    feed(publishers, lines, rate)
    try:
        output = collector.wait(timeout)
    except subprocess.TimeoutExpired:
        collector.process.kill()
        raise RuntimeError(f"not all {expected} scores arrived within {timeout}s") from None
    for publisher in publishers:
        publisher.wait(10)
    cpu_after = (cpu_seconds(consumer), cpu_seconds(broker.pid), children_cpu_seconds())
    consumer_cpu, broker_cpu, clients_cpu = (
        after - before for after, before in zip(cpu_after, cpu_before, strict=True)
    )
    arrivals, latencies, queued = [], [], []
    for line in output.splitlines():
        arrived, _, payload = line.partition(" ")
        event = json.loads(payload)
        arrivals.append(float(arrived))
        latencies.append(float(arrived) - event["received_at"])
        queued.append(event.get("queued_s", float("nan")))  # the naive consumer has no queue
    return {
        "rate": expected / (max(arrivals) - started),
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
        "queued_p50": float(np.percentile(queued, 50)),
        "consumer_cpu_us": consumer_cpu / expected * 1e6,
        "broker_cpu_us": broker_cpu / expected * 1e6,
        "clients_cpu_us": clients_cpu / expected * 1e6,
    }


def raw_model_rate(scorer: Scorer, beats: np.ndarray, batch: int, repeats: int = 1) -> tuple[float, float]:
    """Median beats/s of the batched model alone, and its CPU microseconds per beat (all threads)."""
    times, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(0, len(beats), batch):
            scorer.score(beats[i : i + batch])
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return len(beats) / statistics.median(times), statistics.median(cpu) / len(beats) * 1e6


def matmul_flops_per_beat(model: torch.nn.Module, seq_len: int) -> float:
    """Multiply-adds of every weight matrix at every time step, times two: all the LSTMs' matrix work."""
    weights = sum(p.numel() for name, p in model.named_parameters() if "weight" in name)
    return 2.0 * weights * seq_len


def matmul_peak_flops(size: int = 1024) -> float:
    """What one large float32 matrix product reaches here: no batched model's matmuls go faster than this."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats=9)


@contextmanager
def other_cores_busy() -> Iterator[None]:
    """Spin one process on every other core, as the daemon's own threads, the broker and the clients do.

    The raw model runs alone; end to end it shares the machine. If the model slowed as soon as another
    core is busy (a VM's shared physical cores), no daemon could reach the raw figure; this reference says
    whether that happens here. A spin loop touches no memory, so cache contention does not show in it.
    """
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 1) - 1)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_healthy(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"daemon not healthy within {timeout}s")


def scrape_all(port: int) -> dict[str, float]:
    """Every unlabelled sample the daemon exports, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def scrape(port: int) -> dict[str, float]:
    """The daemon's own counters: batch sizes and model time, to tell a busy model from a starved one."""
    wanted = ("ecgwatch_batch_size_sum", "ecgwatch_batch_size_count", "ecgwatch_inference_seconds_sum")
    return {name: value for name, value in scrape_all(port).items() if name in wanted}


def model_share(before: dict[str, float], after: dict[str, float], beats: int, seconds: float) -> dict[str, float]:
    """Mean micro-batch, model seconds per beat inside the daemon, and the share of wall time the model ran."""
    delta = {k: after[k] - before[k] for k in after}
    return {
        "mean_batch": delta["ecgwatch_batch_size_sum"] / max(delta["ecgwatch_batch_size_count"], 1),
        "inference_us": delta["ecgwatch_inference_seconds_sum"] / beats * 1e6,
        "model_busy": delta["ecgwatch_inference_seconds_sum"] / seconds,
    }


def thread_times(pid: int) -> dict[str, tuple[float, float]]:
    """Per thread: seconds on a CPU and seconds runnable but waiting for one (the kernel's schedstat)."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            on_cpu, waiting, _ = (task / "schedstat").read_text().split()
        except FileNotFoundError:
            continue  # a short-lived thread (one per /metrics request) ended meanwhile
        times[task.name] = (int(on_cpu) / 1e9, int(waiting) / 1e9)
    return times


def model_thread(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], beats: int
) -> dict[str, float]:
    """The busiest thread is the model's: did it compute slower than the raw model, or wait?"""
    deltas = [(a[0] - before[tid][0], a[1] - before[tid][1]) for tid, a in after.items() if tid in before]
    on_cpu, waiting = max(deltas)
    return {"model_thread_cpu_us": on_cpu / beats * 1e6, "model_thread_runqueue_us": waiting / beats * 1e6}


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    metrics_port: int


@dataclass
class Consumers:
    """The daemon on one broker, the naive consumer on another: both subscribe to every beat topic."""

    broker: BrokerAddress
    daemon: Daemon
    naive_broker: BrokerAddress
    naive_pid: int

    def naive_rate(self, lines: list[bytes]) -> float:
        return blast(self.naive_broker, lines, self.naive_pid, timeout=900)["rate"]


@contextmanager
def serving_daemon(
    broker: BrokerAddress, args: argparse.Namespace, extra_env: dict[str, str] | None = None
) -> Iterator[Daemon]:
    """A real ``ecgwatch serve`` process on the broker, healthy, terminated afterwards."""
    metrics_port = free_port()
    env = {
        **os.environ,
        "ECGWATCH_MQTT__HOST": broker.host,
        "ECGWATCH_MQTT__PORT": str(broker.port),
        "ECGWATCH_MQTT__CLIENT_ID": f"bench-daemon-{free_port()}",
        "ECGWATCH_METRICS__PORT": str(metrics_port),
        "ECGWATCH_BATCH__MAX_SIZE": str(args.batch),
        "ECGWATCH_BATCH__THREADS": str(args.threads),
        "ECGWATCH_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    process = subprocess.Popen([sys.executable, "-m", "ecgwatch", "serve"], env=env)
    try:
        wait_healthy(metrics_port)
        yield Daemon(process, metrics_port)
    finally:
        process.terminate()
        process.wait(30)


def saturated(daemon: Daemon, broker: BrokerAddress, lines: list[bytes]) -> dict[str, float]:
    """Every line as fast as the C clients publish: the daemon's sustained rate, latency and CPU split."""
    before, threads_before = scrape(daemon.metrics_port), thread_times(daemon.process.pid)
    result = blast(broker, lines, daemon.process.pid, timeout=600)
    result.update(model_share(before, scrape(daemon.metrics_port), len(lines), len(lines) / result["rate"]))
    result.update(model_thread(threads_before, thread_times(daemon.process.pid), len(lines)))
    return result


def paced(daemon: Daemon, broker: BrokerAddress, lines: list[bytes], rate: float) -> dict[str, float]:
    """Latency below capacity, where a real fleet runs: beats arrive at ``rate`` per second."""
    return blast(broker, lines, daemon.process.pid, 600, rate)


@contextmanager
def naive_consumer(broker: BrokerAddress, args: argparse.Namespace) -> Iterator[int]:
    """The obvious first version (benchmarks/naive_consumer.py), in its own process like the daemon; its pid."""
    command = [sys.executable, "-m", "benchmarks.naive_consumer", "--port", str(broker.port)]
    process = subprocess.Popen([*command, "--threads", str(args.threads)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "subscribed":
            raise RuntimeError("naive consumer did not start")
        yield process.pid
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def consumers_running(args: argparse.Namespace) -> Iterator[Consumers]:
    with (
        mosquitto("/usr/sbin/mosquitto") as broker,
        mosquitto("/usr/sbin/mosquitto") as naive_broker,
        serving_daemon(broker, args) as daemon,
        naive_consumer(naive_broker, args) as naive_pid,
    ):
        yield Consumers(broker, daemon, naive_broker, naive_pid)


def rounds_of_raw_served_and_naive(
    consumers: Consumers, scorer: Scorer, beat_array: np.ndarray, args: argparse.Namespace
) -> list[dict[str, float]]:
    """Raw model, daemon, naive consumer, back to back, ``args.rounds`` times; each round keeps its ratios."""
    lines = payload_lines(beat_array, len(beat_array))
    naive_lines = lines[: args.naive_beats]
    # Warm-up: the first batches pay torch's lazy set-up.
    saturated(consumers.daemon, consumers.broker, lines[: len(lines) // 8])
    consumers.naive_rate(naive_lines[:50])
    rounds = []
    for k in range(args.rounds):
        raw, model_cpu_us = raw_model_rate(scorer, beat_array, args.batch)
        served = saturated(consumers.daemon, consumers.broker, lines)
        naive = consumers.naive_rate(naive_lines)
        rounds.append(
            {
                **served,
                "raw": raw,
                "model_cpu_us": model_cpu_us,
                "naive": naive,
                "ratio": served["rate"] / raw,
                "naive_ratio": served["rate"] / naive,
            }
        )
        print(
            f"round {k + 1}/{args.rounds}: raw {raw:.0f}, end to end {served['rate']:.0f}, naive {naive:.0f} beats/s",
            flush=True,
        )
    return rounds


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beats", type=int, default=8000, help="beats per end-to-end round")
    parser.add_argument("--rounds", type=int, default=5, help="raw, daemon, naive in turn; ratios are medians")
    parser.add_argument("--naive-beats", type=int, default=1000, help="beats per naive-consumer round")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for the raw model and both consumers")
    parser.add_argument("--paced-fraction", type=float, default=0.5, help="latency run at this share of capacity")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    beats = load_ecg5000().x
    scorer = Scorer(artifact.load(artifact.REFERENCE_MODEL_DIR), torch.device("cpu"))
    beat_array = np.resize(beats, (args.beats, beats.shape[1]))  # the same beats for the raw model and the daemon
    with consumers_running(args) as consumers:
        rounds = rounds_of_raw_served_and_naive(consumers, scorer, beat_array, args)
        served = medians(rounds)
        paced_rate = served["rate"] * args.paced_fraction
        paced_lines = payload_lines(beats, int(paced_rate * args.paced_seconds))
        latency = paced(consumers.daemon, consumers.broker, paced_lines, paced_rate)
        rss_mb = peak_rss_mb(consumers.daemon.process.pid)
    with other_cores_busy():
        raw_busy = raw_model_rate(scorer, beat_array, args.batch, repeats=3)[0]
    batch_one = raw_model_rate(scorer, beat_array[: args.naive_beats], 1)[0]
    flops, peak = matmul_flops_per_beat(scorer.model, scorer.loaded.seq_len), matmul_peak_flops()
    ratios = sorted(r["ratio"] for r in rounds)
    print(f"model {scorer.loaded.version}, {args.threads} threads, batch {args.batch}, {args.beats} beats a round")
    report(f"raw batched model (batch {args.batch}), median of rounds", served["raw"], "beats/s")
    report("daemon end to end through Mosquitto, median", served["rate"], "beats/s")
    report("naive one-message-at-a-time consumer, median", served["naive"], "beats/s")
    report("end to end / raw batched model, median of rounds", served["ratio"], "x")
    print(f"{'  per round, sorted':52s} {' '.join(f'{r:.3f}' for r in ratios)}")
    report("end to end / naive consumer, median of rounds", served["naive_ratio"], "x")
    print(f"{'  per round, sorted':52s} {' '.join(f'{r:.2f}' for r in sorted(r['naive_ratio'] for r in rounds))}")
    report("raw batched model, other cores spinning (reference)", raw_busy, "beats/s")
    report("end to end / that reference", served["rate"] / raw_busy, "x")
    report("latency p50 at saturation (receive -> score arrives)", served["p50"] * 1000, "ms")
    report("latency p99 at saturation", served["p99"] * 1000, "ms")
    report(f"latency p50 paced at {paced_rate:.0f} beats/s", latency["p50"] * 1000, "ms")
    report(f"latency p99 paced at {paced_rate:.0f} beats/s", latency["p99"] * 1000, "ms")
    report("  of which waiting in the daemon's queue (p50)", latency["queued_p50"] * 1000, "ms")
    report("daemon peak resident memory (VmHWM)", rss_mb, "MB")
    print("Inside the daemon at saturation (its own metrics, medians of rounds):")
    report("  mean micro-batch", served["mean_batch"], "beats")
    report(f"  model wall time per beat (raw score() alone: {1e6 / served['raw']:.0f})", served["inference_us"], "us")
    report("  share of wall time the model was running", served["model_busy"], "")
    report("  model thread on a CPU, per beat", served["model_thread_cpu_us"], "us")
    report("  model thread runnable but waiting for a CPU, per beat", served["model_thread_runqueue_us"], "us")
    print("CPU time per beat, all threads (where the cores go):")
    report("  model alone, batched", served["model_cpu_us"], "us")
    report("  daemon process (model + MQTT + parsing)", served["consumer_cpu_us"], "us")
    report("  mosquitto broker", served["broker_cpu_us"], "us")
    report("  load generator + collector (C clients)", served["clients_cpu_us"], "us")
    print(f"Compute ceiling ({flops / 1e6:.1f} MFLOP of matrix products per beat):")
    report("  one large float32 matmul on one thread", peak / 1e9, "GFLOP/s")
    report(f"  raw model, batch {args.batch}", served["raw"] * flops / 1e9, "GFLOP/s")
    report("  raw model, batch 1", batch_one * flops / 1e9, "GFLOP/s")
    report("  => batched model at that matmul's speed / naive", peak / flops / served["naive"], "x")
    total = served["consumer_cpu_us"] + served["broker_cpu_us"] + served["clients_cpu_us"]
    cores = os.cpu_count() or 1
    report(f"  => ceiling on {cores} cores at this CPU cost", cores / total * 1e6, "beats/s")


if __name__ == "__main__":
    main()
