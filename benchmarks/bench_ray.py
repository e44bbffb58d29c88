"""The build on Ray Data against the local build, side by side on one corpus.

Contenders, each a ``llava-hf build`` command in a fresh process group, run in turn ``--repeat`` times
(the previous contender's output written back to disk and the corpus's files read right before each, so
each starts with the same warm page cache and no write-back of another's output):

- ``local, --num-proc 2``: the local build with two worker processes;
- ``ray, 2 CPUs``: ``--engine ray --num-proc 2`` (a local Ray with 2 CPUs, started and shut down by the build);
- ``ray start-up``: what any Ray Data job of llava-hf pays before its first shard: ``ray.init(address="local",
  num_cpus=2)``, a Ray Data job of two tasks that import ``llava_hf.build`` (Ray Data's executor and the
  workers' imports; the local build forks its workers, which inherit the imports), ``ray.shutdown()``. Each
  round's start-up run is subtracted from that round's Ray build (wall and CPU); "after start-up" is the
  median of those.

Measured from outside, over every process of the contender's session (Ray's GCS, raylet and workers are
its descendants, waited for until all have exited, so none overlaps the next contender): wall time; CPU time as the sum of each process's user + system time (``/proc/PID/stat``,
sampled every 20 ms, plus the waited-for children's accounting of the command itself); peak RSS summed over
the processes alive at once. The two builds' folders are compared file by file (they must be identical).

Usage: ``python benchmarks/bench_ray.py [--small] [--samples N] [--workdir DIR] [--repeat R]``
"""

from __future__ import annotations

import filecmp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, corpus_location, machine_facts, print_facts, print_table, warm_page_cache

FULL_SAMPLES = 20_000
SMALL_SAMPLES = 100
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

STARTUP_CODE = """
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False)
ray.data.DataContext.get_current().enable_progress_bars = False

def imports(batch):
    import llava_hf.build.write
    return batch

ray.data.range(2, override_num_blocks=2).map_batches(imports).take_all()
ray.shutdown()
"""

LOCAL = "local, --num-proc 2"
RAY = "ray, 2 CPUs"
STARTUP = "ray start-up"


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    processes: int


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(session, cpu seconds, rss MB) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields from the 3rd: state ppid pgrp session ... utime(14) stime(15) ... rss(24)
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / TICKS, int(fields[21]) * PAGE / 2**20


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` in a new session; sample every process of that session until it exits."""
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    cpu: dict[int, float] = {}  # last seen CPU time of each process of the session
    peak = 0.0
    done = threading.Event()

    foreign: set[int] = set()  # processes of other sessions: not read again (the sampler's own CPU competes)

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            total = 0.0
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) in foreign:
                    continue
                stat = _stat(int(name))
                if stat is None or stat[0] != proc.pid:
                    if stat is not None:
                        foreign.add(int(name))
                    continue
                cpu[int(name)] = stat[1]
                total += stat[2]
            peak = max(peak, total)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.monotonic() - start
    # what Ray leaves to exit after the command (its GCS, raylet) is sampled until gone, and never
    # overlaps the next contender
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        (stat := _stat(int(name))) is not None and stat[0] == proc.pid
        for name in os.listdir("/proc")
        if name.isdigit()
    ):
        time.sleep(0.05)
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # the command itself is counted by the kernel when it is reaped; the others as last sampled
    sampled_others = sum(c for pid, c in cpu.items() if pid != proc.pid)
    return Run(wall, waited + sampled_others, peak, len(cpu))


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()
    workdir, samples, corpus = corpus_location(args, FULL_SAMPLES, SMALL_SAMPLES)
    if not (corpus / "data.json").exists():
        from corpus import make_corpus

        make_corpus(corpus, samples)
    exe = shutil.which("llava-hf") or "llava-hf"
    build = [
        exe,
        "build",
        str(corpus / "data.json"),
        "--image-folder",
        str(corpus / "images"),
        "--num-proc",
        "2",
    ]
    outs = {LOCAL: workdir / "ray-bench" / "out", RAY: workdir / "ray-bench" / "out"}
    commands = {
        LOCAL: [*build, "--output-dir", str(outs[LOCAL])],
        RAY: [*build, "--output-dir", str(outs[RAY]), "--engine", "ray"],
        STARTUP: [
            sys.executable,
            "-c",
            STARTUP_CODE,
        ],
    }
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    first: Path | None = None
    for round_ in range(args.repeat):
        for name, cmd in commands.items():
            if name in outs:
                shutil.rmtree(outs[name], ignore_errors=True)
            os.sync()  # the previous contender's 2 GB of output is written back now, not during this one
            warm_page_cache([corpus])
            runs[name].append(measure(cmd))
            if name in outs and round_ == 0:  # the same folder, byte for byte
                if first is None:
                    first = outs[name].with_name("first")
                    shutil.rmtree(first, ignore_errors=True)
                    outs[name].rename(first)
                else:
                    _check_same(first, outs[name])
    if first is not None:
        shutil.rmtree(first, ignore_errors=True)
    for out in outs.values():
        shutil.rmtree(out, ignore_errors=True)

    print_facts(f"bench_ray: {samples} samples", machine_facts(workdir))
    med = {name: _median(r) for name, r in runs.items()}
    # each round's Ray build less the start-up run beside it, then the median over rounds
    pairs = list(zip(runs[RAY], runs[STARTUP]))
    after_wall = statistics.median(r.wall_s - s.wall_s for r, s in pairs)
    after_cpu = statistics.median(r.cpu_s - s.cpu_s for r, s in pairs)
    print("rounds, wall s (local / ray / start-up / ray after start-up):")
    for round_, (loc, r, s) in enumerate(zip(runs[LOCAL], runs[RAY], runs[STARTUP])):
        print(f"  {round_}: {loc.wall_s:.2f} / {r.wall_s:.2f} / {s.wall_s:.2f} / {r.wall_s - s.wall_s:.2f}")
    rows = []
    for name, m in med.items():
        rows.append(
            [
                name,
                f"{m.wall_s:.2f} ({_range(runs[name], 'wall_s')})",
                f"{after_wall:.2f} ({after_wall / med[LOCAL].wall_s:.2f}x)" if name == RAY else "",
                f"{m.cpu_s:.2f} ({m.cpu_s / med[LOCAL].cpu_s:.2f}x)",
                f"{after_cpu:.2f} ({after_cpu / med[LOCAL].cpu_s:.2f}x)" if name == RAY else "",
                f"{m.peak_rss_mb:.0f}",
                str(m.processes),
            ]
        )
    print_table(
        [
            "contender",
            "wall s (range)",
            "wall after start-up (vs local)",
            "CPU s (vs local)",
            "CPU after start-up (vs local)",
            "peak RSS MB",
            "procs",
        ],
        rows,
    )


def _median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.wall_s for r in runs),
        statistics.median(r.cpu_s for r in runs),
        statistics.median(r.peak_rss_mb for r in runs),
        max(r.processes for r in runs),
    )


def _range(runs: list[Run], field: str) -> str:
    values = [getattr(r, field) for r in runs]
    return f"{min(values):.2f}-{max(values):.2f}"


def _check_same(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b or not all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a):
        raise SystemExit(f"the Ray build's folder differs from the local build's: {a} vs {b}")


if __name__ == "__main__":
    main()
