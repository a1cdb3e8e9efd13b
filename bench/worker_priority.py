"""How much other load on the machine slows a trial, at Ray's worker niceness and at ours.

    python bench/worker_priority.py [--steps 15] [--hogs N] [--out ...]

One trial's worth of fixed work (training steps of MobileViT-XXS at 64x64, batch 16, one thread)
runs as a Ray task on a fresh local Ray instance whose workers start at niceness 15 (Ray's
default) or 0 (``workers.niceness``'s default), first on an idle machine, then beside ``--hogs``
processes that each keep a core busy at the driver's priority (default: one per core, as a
build, a browser or a second study does). The table gives the wall time of each and its ratio
to the idle run at the same niceness, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

from _results import write_results


def _hog() -> None:
    while True:
        pass


def _work(steps: int) -> float:
    import torch

    import mobilevit

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = mobilevit.create_model("mobilevit_xxs", num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.rand(16, 3, 64, 64), torch.randint(0, 10, (16,))
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def _trial_seconds(niceness: int, steps: int) -> float:
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             _system_config={"worker_niceness": niceness})
    try:
        task = ray.remote(num_cpus=1)(_work)
        ray.get(task.remote(1))  # the worker is started and torch imported before timing
        return ray.get(task.remote(steps))
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", default="bench/results/worker_priority.json")
    args = parser.parse_args()
    rows = []
    for niceness in (15, 0):
        idle = _trial_seconds(niceness, args.steps)
        hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hogs)]
        for h in hogs:
            h.start()
        try:
            loaded = _trial_seconds(niceness, args.steps)
        finally:
            for h in hogs:
                h.terminate()
                h.join()
        rows.append({"niceness": niceness, "idle_s": round(idle, 2), "loaded_s": round(loaded, 2),
                     "slowdown": round(loaded / idle, 2)})
    print(f"{'worker niceness':>15} {'idle s':>8} {f'beside {args.hogs} hogs s':>18} {'slowdown':>9}")
    for r in rows:
        print(f"{r['niceness']:>15} {r['idle_s']:>8.2f} {r['loaded_s']:>18.2f} "
              f"{r['slowdown']:>8.1f}x")
    write_results(args.out, {"steps": args.steps, "hogs": args.hogs, "rows": rows})


if __name__ == "__main__":
    main()
