"""Roofline: every system at 1 to 256 lanes against this machine's matmul peak and bandwidth,
all measured in one run.

    python benchmarks/roofline.py [--lanes 1,16,64,256] [--steps 40000] [--settings a,b,...]
                                  [--json PATH]

Settings (the systems' own config classes and runner builders, defaults unless named):
Two-colors actor-critic with algo fixed, mg (K = 1) and bmg (K = 7, L = 9); Two-colors
Q(lambda) (agent q: the default forward view, SGD, 16-step rollouts) fixed and bmg (K = 0,
L = 8); MinAtar Breakout STACX (B = 32, T = 20) with algo stacx (the one-step meta-gradient,
MG K = 1) and bmg (K = 1, L = 1). Lanes are seeds run in parallel: vmapped, sharded over every
CPU core exposed as a JAX device (as the CLI does).

Per (setting, lanes), on the Anakin runner (`runner.compile()`, `start()`, `run_chunk()`):
- **steps/s**: environment steps (frames for MinAtar; a BMG target's steps count) of all lanes
  together per device second, over 2 timed chunks after one warm-up chunk; compilation is
  excluded. A chunk holds about `--steps` steps of all lanes (a quarter of it for MinAtar), and
  at least one meta-step per lane.
- **FLOPs, bytes / step**: of the compiled chunk program, per environment step of one lane:
  `machine.loop_cost` of its HLO (XLA's per-operation cost conventions with every loop body
  counted as often as it runs; XLA's own `cost_analysis()` counts a loop's body once, which for
  a chunk of scans undercounts by the trip counts; its raw figures go to the JSON), divided by
  the lanes on a device x the steps of a lane in a chunk.
- **of peak**: FLOP/s achieved (steps/s x FLOPs / step) over the measured float32 matmul peak;
  **of bw**: bytes/s achieved over the bandwidth measured at the working set's size (XLA's
  peak memory of the chunk on all devices; capped at 1 GiB: main memory).
- **host ms / chunk**: what `run_chunk` reports as host seconds (trace to host, NaN check,
  append), mean of the timed chunks (every chunk's in the JSON).
- **XLA peak**: XLA's memory analysis of the chunk (arguments + outputs + temporaries - aliased),
  all devices; the process's max RSS is printed at the end. A combination the runner refuses
  for memory is skipped with its reason.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import shlex
import sys
import time

from bmg.experiments.command import use_all_cpu_cores

use_all_cpu_cores()  # before jax is imported, as the CLI does

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402

# name -> (system, config fields, share of --steps per chunk)
SETTINGS = {
    "ac-fixed": ("two-colors", {"algo": "fixed"}, 1.0),
    "ac-mg-k1": ("two-colors", {"algo": "mg", "inner_steps": 1}, 1.0),
    "ac-bmg-k7-l9": ("two-colors", {"algo": "bmg", "inner_steps": 7, "bootstrap_steps": 9}, 1.0),
    "q-fixed": ("two-colors", {"agent": "q", "algo": "fixed"}, 1.0),
    "q-bmg-k0-l8": ("two-colors", {"agent": "q", "algo": "bmg"}, 1.0),
    "minatar-stacx": ("minatar", {"algo": "stacx"}, 0.25),
    "minatar-bmg-k1-l1": ("minatar", {"algo": "bmg", "inner_steps": 1, "bootstrap_steps": 1}, 0.25),
}


def make(system: str, fields: dict, lanes: int, per_lane: int):
    """(config, runner) of `system` with `lanes` seeds and 3 chunks of about `per_lane` steps
    per lane (whole meta-steps, at least one)."""
    if system == "two-colors":
        from bmg.experiments.two_colors.system import TwoColorsConfig as Config
        from bmg.experiments.two_colors.system import make_runner
    else:
        from bmg.experiments.minatar.system import MinAtarConfig as Config
        from bmg.experiments.minatar.system import make_runner
    probe = Config(**fields, seeds=lanes, steps=10**9, chunk_steps=10**9)
    chunk = max(1, round(per_lane / probe.steps_per_meta_step)) * probe.steps_per_meta_step
    config = Config(**fields, seeds=lanes, steps=3 * chunk, chunk_steps=chunk)
    return config, make_runner(config)


def measure(name: str, lanes: int, steps: int, bounds: dict, bandwidths: dict) -> dict:
    system, fields, share = SETTINGS[name]
    config, runner = make(system, fields, lanes, math.ceil(steps * share / lanes))
    row = {"setting": name, "lanes": lanes}
    try:
        row["compile_seconds"] = runner.compile()
    except ValueError as error:  # OutOfMemoryError: the sentence says how many lanes fit
        return {**row, "skipped": str(error)}
    compiled = runner._compiled
    devices = runner.sharding.mesh.size
    peak_bytes = (runner.memory_bytes or 0) * devices
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if peak_bytes > 0.8 * free:  # the runner checks one device against the whole host
        return {
            **row,
            "skipped": f"XLA's peak for all {devices} devices, {peak_bytes / 2**30:.1f} GiB, is "
            f"more than 0.8 of the {free / 2**30:.1f} GiB free",
        }
    state = runner.start()
    counted = []
    device_seconds, host_seconds = [], []
    for _ in range(3):  # a warm-up chunk, then 2 timed
        state, seconds, host = runner.run_chunk(state)
        device_seconds.append(seconds)
        host_seconds.append(host)
        counted.append(int(state.trace["env_steps"][0, -1]))
    per_lane_chunk = counted[2] - counted[1]  # env steps of one lane in one chunk
    rate = lanes * (counted[2] - counted[0]) / sum(device_seconds[1:])
    cost = machine.loop_cost(compiled)
    xla_flops, xla_bytes = machine.xla_cost(compiled)
    lane_steps = lanes / devices * per_lane_chunk  # per device, one chunk
    flops, bytes_ = cost["flops"] / lane_steps, cost["bytes"] / lane_steps
    size = 2 ** round(math.log2(min(max(peak_bytes, 2**16), 2**30)))
    if size not in bandwidths:
        bandwidths[size] = machine.bandwidth_at(size)
    bandwidth = bandwidths[size]
    del state, runner, compiled
    gc.collect()
    jax.clear_caches()
    return {
        **row,
        "config": {k: v for k, v in fields.items()} | {"steps_per_chunk_per_lane": per_lane_chunk},
        "devices": devices,
        "steps_per_second_all_lanes": rate,
        "chunk_device_seconds": device_seconds,
        "chunk_host_seconds": host_seconds,
        "host_seconds_per_chunk": sum(host_seconds[1:]) / 2,
        "flops_per_step": flops,
        "bytes_per_step": bytes_,
        "unknown_trip_count_loops": cost["unknown_loops"],
        "xla_cost_analysis_per_chunk": {"flops": xla_flops, "bytes accessed": xla_bytes},
        "flops_per_second": rate * flops,
        "fraction_of_matmul_peak": rate * flops / bounds["matmul_flops_per_s"],
        "bandwidth_size_bytes": size,
        "bandwidth_bytes_per_s": bandwidth,
        "fraction_of_bandwidth": rate * bytes_ / bandwidth,
        "xla_peak_bytes_all_devices": peak_bytes,
        "max_rss_bytes_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def table(results: list[dict]) -> str:
    lines = [
        "| setting | lanes | steps/s (all lanes) | FLOPs / step | bytes / step | GFLOP/s | "
        "of matmul peak | GB/s | bw at working set | of bw | host ms / chunk | XLA peak | "
        "compile s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['setting']} | {r['lanes']} | skipped: {r['skipped']} |")
            continue
        rate, bw = r["steps_per_second_all_lanes"], r["bandwidth_bytes_per_s"]
        lines.append(
            f"| {r['setting']} | {r['lanes']} | {rate:,.0f} | {_si(r['flops_per_step'])} | "
            f"{_si(r['bytes_per_step'])} | {r['flops_per_second'] / 1e9:.1f} | "
            f"{r['fraction_of_matmul_peak']:.2f} | {rate * r['bytes_per_step'] / 1e9:.1f} | "
            f"{bw / 1e9:.0f} GB/s ({r['bandwidth_size_bytes'] / 2**20:,.0f} MiB) | "
            f"{r['fraction_of_bandwidth']:.2f} | {1000 * r['host_seconds_per_chunk']:.1f} | "
            f"{r['xla_peak_bytes_all_devices'] / 2**20:,.0f} MiB | {r['compile_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,16,64,256", help="comma-separated lane counts")
    parser.add_argument(
        "--steps", type=int, default=40_000, help="env steps of all lanes per chunk (MinAtar: 1/4)"
    )
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    start = time.perf_counter()
    print(f"# roofline: {machine.machine_line()}\n# command: `{command}`", flush=True)
    bounds = {
        "matmul_flops_per_s": machine.matmul_peak(),
        "dram_bandwidth_bytes_per_s": machine.bandwidth_at(2**30),
        "load_average_at_start": os.getloadavg(),
    }
    bandwidths = {2**30: bounds["dram_bandwidth_bytes_per_s"]}
    print(
        f"# measured: float32 matmul {bounds['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, memory "
        f"bandwidth {bounds['dram_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s at 1 GiB (all devices); "
        f"load average {bounds['load_average_at_start'][0]:.2f}",
        flush=True,
    )
    results = []

    def write_json():
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine.machine_line(),
                    "command": command,
                    "bounds": bounds,
                    "bandwidths": {str(k): v for k, v in bandwidths.items()},
                    "max_rss_bytes": rss,
                    "load_average_at_end": os.getloadavg(),
                    "results": results,
                },
                f,
                indent=2,
            )

    for lanes in (int(n) for n in args.lanes.split(",")):
        for name in names:
            r = measure(name, lanes, args.steps, bounds, bandwidths)
            results.append(r)
            if "skipped" in r:
                print(f"  {name} x {lanes}: skipped: {r['skipped']}", flush=True)
            else:
                print(
                    f"  {name} x {lanes}: {r['steps_per_second_all_lanes']:,.0f} steps/s, "
                    f"{r['fraction_of_matmul_peak']:.2f} of peak, compile "
                    f"{r['compile_seconds']:.0f} s, host s per chunk "
                    f"{[round(h, 4) for h in r['chunk_host_seconds']]}",
                    flush=True,
                )
            if args.json:  # as it goes: a run cut short keeps what it measured
                write_json()
    for size, bandwidth in sorted(bandwidths.items()):
        print(f"# bandwidth at {size / 2**20:,.2f} MiB: {bandwidth / 1e9:.1f} GB/s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"# max RSS {rss / 2**30:.2f} GiB; load average at the end {os.getloadavg()[0]:.2f}; "
        f"{time.perf_counter() - start:.0f} s in all\n"
    )
    print(table(results))
    if args.json:
        write_json()


if __name__ == "__main__":
    main()
