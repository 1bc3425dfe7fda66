"""Time our batched FRA-RIR against pyroomacoustics' image-source method on the same seed-protocol scenes.

    python benchmarks/bench_simulate.py            # human-readable
    python benchmarks/bench_simulate.py --json     # one JSON object

Both simulate 2 mics x 2 sources per scene. pyroomacoustics gets absorption and max order from
inverse Sabine for each scene's room and RT60 (uncapped unless --pra-max-order), one thread for its
fractional-delay builder; its per-scene median over --pra-scenes scenes is the reference. Ours runs
batches of --scenes scenes with torch on 1 thread, on all threads, and on CUDA when available;
per-scene time = batch time / batch size, median over --repeats runs after one warm-up run.
--no-cpu times CUDA alone (for a batch far larger than the CPU runs could take; benchmarks/gpu_check.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulate.config import SimulateConfig  # noqa: E402
from simulate.fra_rir import simulate_rirs  # noqa: E402
from simulate.scenes import sample_scenes  # noqa: E402


def time_ours(cfg: SimulateConfig, scenes, device: str, threads: int, repeats: int) -> float:
    """-> median ms per scene of simulate_rirs over `repeats` runs of the whole batch."""
    torch.set_num_threads(threads)
    batch = scenes.to(device)
    times = []
    for run in range(repeats + 1):  # the first run warms up (allocations, FFT plans, CUDA context)
        generator = torch.Generator().manual_seed(1000 + run)  # simulate draws on the CPU for every device
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        simulate_rirs(batch, cfg, generator)
        if device == "cuda":
            torch.cuda.synchronize()
        if run:
            times.append((time.perf_counter() - start) / len(batch) * 1000)
    return statistics.median(times)


def cpu_time_ours(cfg: SimulateConfig, scenes, repeats: int) -> float:
    """-> median CPU ms per scene of simulate_rirs on 1 thread: the calling thread's CPU time, which other
    processes sharing the cores do not inflate the way they inflate wall time."""
    torch.set_num_threads(1)
    times = []
    for run in range(repeats + 1):
        generator = torch.Generator().manual_seed(1000 + run)
        start = time.thread_time()
        simulate_rirs(scenes, cfg, generator)
        if run:
            times.append((time.thread_time() - start) / len(scenes) * 1000)
    return statistics.median(times)


def time_pyroomacoustics(
    cfg: SimulateConfig, scenes, count: int, max_order: int | None
) -> tuple[list[float], list[int], list[int]]:
    """-> per-scene ms, the max orders used and the scenes timed, of the first `count` (those inverse Sabine accepts)."""
    import pyroomacoustics as pra

    pra.constants.set("num_threads", 1)
    times, orders, timed = [], [], []
    for i in range(min(count, len(scenes))):
        room_dim = scenes.room_dim[i].tolist()
        rt60 = float(scenes.rt60[i])
        start = time.perf_counter()
        try:
            absorption, order = pra.inverse_sabine(rt60, room_dim)
        except ValueError:  # "room may be too large for required RT60": Sabine has no absorption for it
            continue
        if max_order is not None:
            order = min(order, max_order)
        room = pra.ShoeBox(room_dim, fs=cfg.sr, materials=pra.Material(absorption), max_order=order)
        for src in scenes.src_pos[i].tolist():
            room.add_source(src)
        room.add_microphone_array(scenes.mic_pos[i].T.numpy())
        room.compute_rir()
        times.append((time.perf_counter() - start) * 1000)
        orders.append(int(order))
        timed.append(i)
    return times, orders, timed


def compare_pyroomacoustics(cfg: SimulateConfig, scenes, args: argparse.Namespace, ours_ms: float) -> dict:
    """-> pyroomacoustics' per-scene times on the first --pra-scenes scenes and our speed-up (1 thread, ours_ms)."""
    pra_times, orders, timed = time_pyroomacoustics(cfg, scenes, args.pra_scenes, args.pra_max_order)
    # Our batch is the same scene distribution; the pyroomacoustics subset is its first scenes.
    same_subset = time_ours(cfg, scenes.select(torch.tensor(timed, dtype=torch.long)), "cpu", 1, args.repeats)
    return {
        "pyroomacoustics_scenes": len(pra_times),
        "pyroomacoustics_rejected_by_inverse_sabine": min(args.pra_scenes, len(scenes)) - len(timed),
        "pyroomacoustics_max_orders": orders,
        "pyroomacoustics_ms_per_scene_median": statistics.median(pra_times),
        "pyroomacoustics_ms_per_scene_mean": statistics.mean(pra_times),
        "ours_ms_per_scene_1thread_same_subset": same_subset,
        "speedup_vs_pyroomacoustics_1thread": statistics.median(pra_times) / ours_ms,
        "speedup_vs_pyroomacoustics_1thread_same_subset": statistics.mean(pra_times) / same_subset,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=64, help="batch size for our simulator")
    parser.add_argument("--pra-scenes", type=int, default=32,
                        help="scenes timed with pyroomacoustics (~0.4 s each on average); 0 skips it")
    parser.add_argument("--pra-max-order", type=int, default=None, help="cap the inverse-Sabine max order")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of our batch (median reported)")
    parser.add_argument("--decay", choices=["fra", "calibrated"], default="fra")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one-thread", action="store_true", help="skip the all-threads run (a shared machine)")
    parser.add_argument("--no-cpu", action="store_true",
                        help="time CUDA only: no CPU runs and no pyroomacoustics (a large --scenes batch on a GPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    cfg = SimulateConfig(decay=args.decay)
    scenes = sample_scenes(cfg, args.scenes, torch.Generator().manual_seed(args.seed))
    all_threads = os.cpu_count() or 1
    result: dict = {
        "scenes": args.scenes,
        "mics": len(cfg.mic_positions),
        "sources": cfg.num_sources,
        "decay": cfg.decay,
        "cpu_count": all_threads,
        "torch": torch.__version__,
    }
    if not args.no_cpu:
        result["ours_ms_per_scene_1thread"] = time_ours(cfg, scenes, "cpu", 1, args.repeats)
        result["ours_cpu_ms_per_scene_1thread"] = cpu_time_ours(cfg, scenes, args.repeats)
    if not args.one_thread and not args.no_cpu:
        result["ours_ms_per_scene_all_threads"] = time_ours(cfg, scenes, "cpu", all_threads, args.repeats)
    if torch.cuda.is_available():
        result["cuda_device"] = torch.cuda.get_device_name()
        ms = time_ours(cfg, scenes, "cuda", all_threads, args.repeats)
        result["ours_ms_per_scene_cuda"] = ms
        result["ours_scenes_per_s_cuda"] = 1000.0 / ms
    if args.pra_scenes > 0 and not args.no_cpu:
        result.update(compare_pyroomacoustics(cfg, scenes, args, result["ours_ms_per_scene_1thread"]))
    torch.set_num_threads(all_threads)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"scenes: {args.scenes} (ours), {result.get('pyroomacoustics_scenes', 0)} (pyroomacoustics, max orders "
              f"{result.get('pyroomacoustics_max_orders', [])}); {result['mics']} mics x {result['sources']} sources, decay {cfg.decay}, {all_threads} CPU threads")
        if "ours_ms_per_scene_1thread" in result:
            print(f"ours, 1 thread:        {result['ours_ms_per_scene_1thread']:9.2f} ms/scene "
                  f"({result['ours_cpu_ms_per_scene_1thread']:.2f} ms of CPU time)")
        if "ours_ms_per_scene_all_threads" in result:
            print(f"ours, {all_threads} threads:       {result['ours_ms_per_scene_all_threads']:9.2f} ms/scene")
        if "ours_ms_per_scene_cuda" in result:
            print(f"ours, CUDA:            {result['ours_ms_per_scene_cuda']:9.3f} ms/scene "
                  f"({result['ours_scenes_per_s_cuda']:.0f} scenes/s, {result['cuda_device']})")
        if "pyroomacoustics_scenes" in result:
            print(f"pyroomacoustics ISM:   {result['pyroomacoustics_ms_per_scene_median']:9.2f} ms/scene (median, 1 thread)")
            print(f"speedup per core:      {result['speedup_vs_pyroomacoustics_1thread']:9.1f}x "
                  f"(same {result['pyroomacoustics_scenes']} scenes, mean/mean: "
                  f"{result['speedup_vs_pyroomacoustics_1thread_same_subset']:.1f}x)")
    return result


if __name__ == "__main__":
    main()
