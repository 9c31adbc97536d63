"""Helpers the benchmark scripts share: where things are, how the machine is described, peak
resident memory from ``/proc``, cases run in fresh worker processes, timing in turns, and
writing the results.

The scripts run as ``python benchmarks/<script>.py``, which puts this folder first on
``sys.path``: they import these with ``from _common import ...``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository
RESULTS = ROOT / "benchmarks" / "results"  # each suite's default tables

# glibc serves every allocation over 64 KiB by its own mmap and trims the heap at every
# free, so memory freed by torch leaves the resident set at once (for peak_rss_mib)
MALLOC_RETURNS_FREED = dict(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")


# ---------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's model name, from ``/proc/cpuinfo`` where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    """``'<CPU model>, <n> logical CPUs'``."""
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs"


def torch_build() -> str:
    """``'torch <version> (<CPU capability its kernels use, e.g. AVX512>)'``."""
    import torch

    return f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})"


def omp_wait_policy() -> str:
    """``OMP_WAIT_POLICY`` as this process sees it (``'unset'`` if it is not set)."""
    return os.environ.get("OMP_WAIT_POLICY", "unset")


def timestamp() -> str:
    """Local date and time for a report, e.g. ``'2026-11-21 17:48 UTC'``."""
    return f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"


# ---------------------------------------------------------------- peak memory (Linux)


def _status_kib(field: str) -> int:
    """A field of ``/proc/self/status`` in KiB: ``VmRSS`` (resident now), ``VmHWM`` (peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_rss_mib(fn: Callable[[], object]) -> tuple[float, bool]:
    """(MiB, exact): the peak resident memory of one call of ``fn`` above the resident memory
    just before it, i.e. every byte the call touched on top of what was live, whichever
    allocator it came from (outputs included).

    The kernel's high-water mark (``VmHWM``) is reset first (``echo 5 >
    /proc/self/clear_refs``); where that file is not writable, ``exact`` is False and the
    figure is the rise of the process's high-water mark, which misses a peak below an
    earlier one. Best in a fresh process started with ``MALLOC_RETURNS_FREED``.
    """
    rss_before = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        exact = True
    except OSError:
        exact = False
    hwm_before = _status_kib("VmHWM")
    fn()
    return (_status_kib("VmHWM") - (rss_before if exact else hwm_before)) / 1024, exact


# what a table says under peaks of which some are not exact
INEXACT_PEAK_NOTE = (
    "Note: /proc/self/clear_refs was not writable; peaks are ru_maxrss deltas and may under-count."
)


# ---------------------------------------------------------------- fresh worker processes


def spawn(
    script: str, case: dict, env: dict[str, str] | None = None, timeout: float | None = None
) -> dict:
    """Runs ``python script --worker <case as JSON>`` in a fresh process and returns the JSON
    object it printed last. The worker gets this environment plus ``env``, without
    ``VISIONFM_ATTN`` (our attention path is the automatic choice). Past ``timeout``
    seconds the worker is killed and ``subprocess.TimeoutExpired`` raised."""
    worker_env = dict(os.environ, **(env or {}))
    worker_env.pop("VISIONFM_ATTN", None)
    proc = subprocess.run(
        [sys.executable, script, "--worker", json.dumps(case)],
        env=worker_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- timing


def in_turns(names: Sequence[str], rounds: int) -> Iterator[str]:
    """``names`` over ``rounds`` rounds, each starting one further on (ABC, BCA, CAB, ...),
    so that drift in the machine's load hits every name alike."""
    for r in range(rounds):
        k = r % len(names)
        yield from [*names[k:], *names[:k]]


def time_in_turns(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warm_up: bool = False,
    progress: Callable[[], object] | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Calls every function of ``fns`` ``rounds`` times, in turns (``in_turns``) -> (wall-clock
    seconds, process CPU seconds over all threads) of every call, by name. ``warm_up``: one
    untimed call of each first; ``progress`` is called after every call (e.g. a tqdm bar's
    ``update``)."""
    for fn in fns.values() if warm_up else ():
        fn()
        if progress:
            progress()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for name in in_turns(list(fns), rounds):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        fns[name]()
        wall[name].append(time.perf_counter() - start_wall)
        cpu[name].append(time.process_time() - start_cpu)
        if progress:
            progress()
    return wall, cpu


def median_ms(seconds: dict[str, list[float]]) -> dict[str, float]:
    """name -> the median of its times, seconds in, milliseconds out."""
    return {name: statistics.median(t) * 1e3 for name, t in seconds.items()}


def p90(values: list[float]) -> float:
    """The 90th percentile of ``values`` (the smallest value at or above 90 % of them)."""
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


def p90_ms(seconds: dict[str, list[float]]) -> dict[str, float]:
    """name -> the 90th percentile of its times, seconds in, milliseconds out."""
    return {name: p90(t) * 1e3 for name, t in seconds.items()}


def wall_stats(seconds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """name -> ``{'median_ms', 'p90_ms'}`` of its times (seconds in)."""
    median, high = median_ms(seconds), p90_ms(seconds)
    return {name: dict(median_ms=median[name], p90_ms=high[name]) for name in seconds}


def latency_stats(
    wall: dict[str, list[float]], cpu: dict[str, list[float]]
) -> dict[str, dict[str, float]]:
    """name -> ``{'median_ms', 'p90_ms', 'cpu_ms'}``: wall-clock median and p90, median
    process CPU time (seconds in)."""
    cpu_ms = median_ms(cpu)
    return {name: dict(stats, cpu_ms=cpu_ms[name]) for name, stats in wall_stats(wall).items()}


# ---------------------------------------------------------------- ours against a reference


def detector_forwards(reference, ours, size: tuple[int, int], dtype=None) -> dict:
    """-> ``{'ours': fn, 'HF': fn}``: one forward each of a DETR-family detector on the same
    random (1, 3, H, W) input (``size`` = (H, W); float32 unless ``dtype``), returning the
    last layer's (logits (1, Q, C), boxes (1, Q, 4)): ours ``head(extract_feat(x), None)``,
    HF ``model(pixel_values=x)``."""
    import torch

    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def run_ours():
        out = ours.head(ours.extract_feat(x), None)
        return out["logits"][-1], out["boxes"][-1]

    def run_hf():
        out = reference(pixel_values=x)
        return out.logits, out.pred_boxes

    return {"ours": run_ours, "HF": run_hf}


def max_differences(
    forwards: Callable[..., dict[str, Callable[[], tuple]]], reference, ours, *args
) -> tuple[float, ...]:
    """Largest |ours - reference| of each output, both models run in float64 and put back
    in float32 after. ``forwards(reference, ours, *args, torch.float64)`` -> ``{'ours': fn,
    'HF': fn}``, each returning a tuple of tensors of the same shapes."""
    import torch

    fns = forwards(reference.double(), ours.double(), *args, torch.float64)
    got, expected = fns["ours"](), fns["HF"]()
    reference.float(), ours.float()
    return tuple((a - b).abs().max().item() for a, b in zip(got, expected, strict=True))


def ours_vs_hf_parser(doc: str, size: int, runs: int, out: Path) -> argparse.ArgumentParser:
    """The options of a script timing ours against HF on one square image: ``--size``,
    ``--runs``, ``--threads``, ``--out`` (the markdown) and ``--json``, with these defaults;
    ``doc``'s first line describes it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--size", type=int, default=size, help="input side, px")
    parser.add_argument("--runs", type=int, default=runs, help="timed forwards per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    return parser


def compare_in_process(
    forwards: Callable[..., dict[str, Callable[[], tuple]]], reference, ours, size: int, runs: int
) -> tuple[tuple[float, ...], dict[str, list[float]], dict[str, list[float]], dict]:
    """Ours against ``reference`` in this process, without gradients: (``max_differences``
    of the outputs in float64, wall and CPU seconds of ``runs`` forwards each in turns after a
    warm-up (``time_in_turns``), then ``peak_rss_mib`` of one forward, by name).
    ``forwards(reference, ours, size[, dtype])`` as for ``max_differences``."""
    import torch

    with torch.no_grad():
        diffs = max_differences(forwards, reference, ours, size)
        fns = forwards(reference, ours, size)
        wall, cpu = time_in_turns(fns, runs, warm_up=True)
        peaks = {name: peak_rss_mib(fn) for name, fn in fns.items()}
    return diffs, wall, cpu, peaks


def returning_freed_memory() -> None:
    """Re-runs this script (``os.execve``) with ``MALLOC_RETURNS_FREED`` set, unless it is set
    already: for ``peak_rss_mib`` in the process itself."""
    if any(os.environ.get(k) != v for k, v in MALLOC_RETURNS_FREED.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  dict(os.environ, **MALLOC_RETURNS_FREED))  # fmt: skip


# ---------------------------------------------------------------- output


def run_facts(script: str, threads: int, load_before: float) -> dict:
    """What a report says of the run: 1-minute load average before (``load_before``) and
    now, date, machine, torch and transformers builds, threads, ``OMP_WAIT_POLICY`` and the
    command line of ``script`` (its path in the repository)."""
    import transformers

    return dict(
        load_average=[round(v, 2) for v in (load_before, os.getloadavg()[0])],
        date=timestamp(),
        machine=machine(),
        torch=torch_build(),
        transformers=transformers.__version__,
        threads=threads,
        omp_wait_policy=omp_wait_policy(),
        command="python " + " ".join([script, *sys.argv[1:]]),
    )


def run_line(data: dict) -> str:
    """The markdown sentence of ``run_facts``' entries in ``data`` (machine to command)."""
    return (
        f"{data['machine']}; {data['torch']}; transformers {data['transformers']}; "
        f"{data['threads']} threads; OMP_WAIT_POLICY {data['omp_wait_policy']}; 1-minute load "
        f"average {data['load_average'][0]} before, {data['load_average'][1]} after. "
        f"Command: `{data['command']}`."
    )


def busy_note(data: dict, text: str) -> list[str]:
    """``[text, '']`` (a markdown paragraph) when the load average before or after the run
    (``run_facts``) was above the threads used, else ``[]``."""
    return [text, ""] if max(data["load_average"]) > data["threads"] else []


def peak_sentence(exact: bool) -> str:
    """How a peak of ``peak_rss_mib`` in the timing process itself was measured."""
    return (
        "Peak memory: the resident-set high-water mark of one forward above the "
        "resident memory just before it (`/proc/self/clear_refs` resets `VmHWM`"
        + ("" if exact else "; not writable here, so the rise of the mark")
        + "), glibc returning freed memory at once."
    )


def ours_vs_hf_rows(
    median: dict[str, float], high: dict[str, float], cpu: dict[str, float], peak: dict
) -> list[str]:
    """A markdown table of 'ours' against 'HF': median and p90 wall ms, images/s, CPU ms
    and peak MiB (each a dict by name), with the ratios to HF."""
    lines = [
        "| model | median ms | p90 ms | images/s | vs HF | CPU ms | CPU vs HF | peak memory MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("ours", "HF"):
        ms = median[name]
        lines.append(
            f"| {name} | {ms:.0f} | {high[name]:.0f} | {1e3 / ms:.2f} | "
            f"{ms / median['HF']:.2f} | {cpu[name]:.0f} | {cpu[name] / cpu['HF']:.2f} | "
            f"{peak[name]:.0f} |"
        )
    return lines


def fmt(value: float | None, spec: str, missing: str = "—") -> str:
    """``value`` formatted by ``spec`` for a markdown table; ``missing`` for None."""
    return missing if value is None else format(value, spec)


def write_results(out: Path, markdown: str, json_path: Path | None, data: dict) -> None:
    """Writes the suite's markdown to ``out`` (making its folder) and, where ``json_path`` is
    given, ``data`` as JSON there (what ``benchmarks/run_all.py`` parses)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown, encoding="utf-8")
    if json_path:
        json_path.write_text(json.dumps(data, indent=1), encoding="utf-8")
