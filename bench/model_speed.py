"""Model speed: forward and training throughput, and where the time of one MobileViT block goes.

    python bench/model_speed.py [--quick] [--out bench/results/model_speed.json]

For MobileViT-XXS, MobileViT-S, MobileViTv2-1.0 and MobileViTv3-S at 256x256, measures forward
images/s at batch 1 and 32 and training-step images/s (forward, backward, AdamW step) at batch 32,
on the CPU and, when CUDA is available, on the GPU with AMP, channels-last and torch.compile.

Then profiles one block per layout (v1-S layer 3: tokens layout, MHSA; v2-1.0 layer 3: channels
layout, separable attention) with torch.profiler and reports the share of its time spent in
reshapes and copies (unfold/fold, layout permutes) next to convs, matmuls/attention and norms.

``--timm-only`` instead measures ours against timm's implementation of the same designs (same
weights; ``make bench-env``), then ``torch.compile`` against eager on the CPU.

Prints tables and writes everything as JSON. Absolute figures on shared machines are noisy; compare
ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from _results import write_results
from torch import nn

import mobilevit
from mobilevit.model import channels_last
from nas.profile import count_macs
from nas.runtime import tune_cpu_allocator

MODELS = ["mobilevit_xxs", "mobilevit_s", "mobilevitv2_100", "mobilevitv3_s"]
RES = 256

# aten ops grouped for the block profile (self time).
OP_GROUPS = {
    "reshape/copy": ("aten::copy_", "aten::clone", "aten::contiguous", "aten::reshape",
                     "aten::permute", "aten::view", "aten::_unsafe_view", "aten::transpose",
                     "aten::as_strided", "aten::unbind", "aten::select", "aten::split",
                     "aten::split_with_sizes", "aten::narrow", "aten::slice", "aten::t",
                     "aten::expand", "aten::empty_like", "aten::empty", "aten::empty_strided",
                     "aten::resolve_conj", "aten::resolve_neg", "aten::alias", "aten::detach",
                     "aten::lift_fresh", "aten::unsqueeze", "aten::squeeze", "aten::flatten"),
    "conv": ("aten::conv2d", "aten::convolution", "aten::_convolution",
             "aten::mkldnn_convolution", "aten::thnn_conv2d", "aten::_slow_conv2d_forward",
             "aten::_nnpack_spatial_convolution", "aten::cudnn_convolution"),
    "linear": ("aten::linear", "aten::addmm", "aten::matmul", "aten::mm"),
    "attention": ("aten::bmm", "aten::scaled_dot_product_attention",
                  "aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_scaled_dot_product_efficient_attention",
                  "aten::_scaled_dot_product_flash_attention", "aten::baddbmm",
                  "aten::_softmax", "aten::softmax"),
    "norm": ("aten::layer_norm", "aten::native_layer_norm", "aten::group_norm",
             "aten::native_group_norm", "aten::batch_norm", "aten::_batch_norm_impl_index",
             "aten::native_batch_norm", "aten::_native_batch_norm_legit_no_training",
             "aten::mean", "aten::var", "aten::rsqrt"),
}


def _timeit(fn: Callable[[], object], *, warmup: int, repeats: int, sync: Callable[[], None]) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_model(name: str, device: str, *, quick: bool,
                  batches: tuple[int, ...] = (1, 32), train: bool = True,
                  model: nn.Module | None = None) -> dict[str, float]:
    """Forward img/s at ``batches`` and (optionally) training img/s at batch 32 for one model
    (ours unless ``model`` is given)."""
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = (mobilevit.create_model(name) if model is None else model).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu",
                                                                                   enabled=False)
    run_model: nn.Module = torch.compile(model) if cuda else model  # type: ignore[assignment]
    reps = (2 if quick else 5) if not cuda else 20
    out: dict[str, float] = {}
    model.eval()
    for batch in batches:
        x = torch.randn(batch, 3, RES, RES, device=device)
        if cuda:
            x = x.to(memory_format=torch.channels_last)

        def forward(x: torch.Tensor = x) -> None:
            with torch.no_grad(), amp:
                run_model(x)

        sec = _timeit(forward, warmup=2 if not cuda else 5, repeats=reps * (4 if batch == 1 else 1),
                      sync=sync)
        out[f"forward_b{batch}_img_s"] = batch / sec
    if not train:
        return out
    model.train()
    batch = 32
    x = torch.randn(batch, 3, RES, RES, device=device)
    if cuda:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = loss_fn(run_model(x), y)
        loss.backward()
        opt.step()

    sec = _timeit(train_step, warmup=1 if not cuda else 5, repeats=reps, sync=sync)
    out["train_b32_img_s"] = batch / sec
    return out


def timm_twin(name: str, timm: object) -> tuple[nn.Module, nn.Module] | None:
    """Ours and timm's implementation of ``name``, timm's carrying a fresh model's weights of
    ours, checked to give the same logits (within 1e-5 of the largest); None where timm has no
    such model (no MobileViTv3).

    Ours is built with timm's dropout rates (all zero), not the papers' (up to 0.1), so that a
    training step does the same work in both.
    """
    try:
        theirs = timm.create_model(name)  # type: ignore[attr-defined]
    except RuntimeError:
        return None
    rates = {m.p for m in theirs.modules() if isinstance(m, nn.Dropout)}
    if rates - {0.0}:
        raise SystemExit(f"{name}: timm's model has dropout {sorted(rates)}; expected none")
    spec = mobilevit.get_fixed_point(name).spec
    spec = spec.with_blocks(dropout=0.0, attn_dropout=0.0, ffn_dropout=0.0).replace(
        classifier_dropout=0.0)
    ours = mobilevit.create_model(spec)
    mine, their_state = ours.state_dict(), theirs.state_dict()
    # Both register the same tensors in the same order; the logits check below proves it.
    if [v.shape for v in mine.values()] != [v.shape for v in their_state.values()]:
        raise SystemExit(f"{name}: timm's tensors do not line up with ours")
    theirs.load_state_dict(dict(zip(their_state, mine.values(), strict=True)))
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        # The same network up to rounding (ours folds BatchNorm in eval mode and runs
        # channels-last throughout, so the kernels and their rounding differ); a wrong weight or
        # wiring would differ by the logits' own size.
        expected = theirs.eval()(x)
        gap = float((ours.eval()(x) - expected).abs().max() / expected.abs().max())
    if gap > 1e-5:
        raise SystemExit(f"{name}: timm's logits differ from ours after copying the weights "
                         f"({gap:.1e} of the largest logit)")
    return ours, theirs


class ChannelsLastInput(nn.Module):
    """timm's model called on a channels-last copy of its input, as ours converts its own."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(channels_last(x))


def compare_timm(quick: bool, rounds: int = 2) -> dict[str, dict[str, float]]:
    """Ours against timm, side by side: per model, ``rounds`` alternating measurements of each,
    the best of each kept (the least disturbed by other load)."""
    from _timm import load_timm

    timm = load_timm()
    out: dict[str, dict[str, float]] = {}
    keys = ("forward_b1_img_s", "forward_b32_img_s", "train_b32_img_s")
    print(f"\nOurs against timm {timm.__version__} (same weights, logits within 1e-5), CPU, "
          f"{torch.get_num_threads()} threads, {RES}x{RES}: images/s, ours / timm")
    print(f"{'model':<18}" + "".join(f"{k[:-6]:>26}" for k in keys))
    for name in MODELS:
        pair = timm_twin(name, timm)
        if pair is None:
            print(f"{name:<18}  (not in timm)")
            continue
        ours, twin = pair
        best: dict[str, dict[str, float]] = {"ours": {}, "timm": {}, "timm_cl": {}}
        for _ in range(rounds):
            for who, model in (("ours", ours), ("timm", twin),
                               ("timm_cl", ChannelsLastInput(twin))):
                r = measure_model(name, "cpu", quick=quick, model=model)
                for k in keys:
                    best[who][k] = max(best[who].get(k, 0.0), r[k])
        row = {**{f"{who}_{k}": best[who][k] for who in best for k in keys},
               **{f"ratio_{k}": best["ours"][k] / best["timm"][k] for k in keys},
               **{f"ratio_cl_{k}": best["ours"][k] / best["timm_cl"][k] for k in keys}}
        out[name] = row
        print(f"{name:<18}" + "".join(
            f"{best['ours'][k]:>9.1f} /{best['timm'][k]:>7.1f} ={row[f'ratio_{k}']:>5.2f}x"
            for k in keys))
        print(f"{'  timm, CL input':<18}" + "".join(
            f"{best['ours'][k]:>9.1f} /{best['timm_cl'][k]:>7.1f} ={row[f'ratio_cl_{k}']:>5.2f}x"
            for k in keys))
    return out


def compare_compile(quick: bool, names: tuple[str, ...] = ("mobilevit_xxs", "mobilevit_s")
                    ) -> dict[str, dict[str, float]]:
    """Eager against ``torch.compile`` (inductor, CPU) for our models: the first call's time
    (compilation included) and the steady images/s of a batch-32 forward and training step."""
    out: dict[str, dict[str, float]] = {}
    print(f"\ntorch.compile (inductor) against eager, CPU, {torch.get_num_threads()} threads, "
          f"{RES}x{RES}, batch 32: images/s, and the first call's seconds (compilation)")
    print(f"{'model':<18}{'fwd eager':>11}{'fwd compiled':>14}{'first fwd s':>13}"
          f"{'train eager':>13}{'train compiled':>16}{'first step s':>14}")
    for name in names:
        row: dict[str, float] = {}
        for compiled in (False, True):
            torch.manual_seed(0)
            model = mobilevit.create_model(name)
            run = torch.compile(model) if compiled else model
            tag = "compiled" if compiled else "eager"
            x = torch.randn(32, 3, RES, RES)
            model.eval()
            start = time.perf_counter()
            with torch.no_grad():
                run(x)
            row[f"first_forward_s_{tag}"] = time.perf_counter() - start

            def forward(x: torch.Tensor = x, run: nn.Module = run) -> None:
                with torch.no_grad():
                    run(x)

            row[f"forward_b32_img_s_{tag}"] = 32 / _timeit(forward, warmup=1,
                                                           repeats=2 if quick else 4,
                                                           sync=lambda: None)
            model.train()
            y = torch.randint(0, 1000, (32,))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def step(x: torch.Tensor = x, y: torch.Tensor = y, run: nn.Module = run,
                     opt: torch.optim.Optimizer = opt) -> None:
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(run(x), y).backward()
                opt.step()

            start = time.perf_counter()
            step()
            row[f"first_step_s_{tag}"] = time.perf_counter() - start
            row[f"train_b32_img_s_{tag}"] = 32 / _timeit(step, warmup=1,
                                                         repeats=2 if quick else 3,
                                                         sync=lambda: None)
        out[name] = row
        print(f"{name:<18}{row['forward_b32_img_s_eager']:>11.1f}"
              f"{row['forward_b32_img_s_compiled']:>14.1f}{row['first_forward_s_compiled']:>13.1f}"
              f"{row['train_b32_img_s_eager']:>13.1f}{row['train_b32_img_s_compiled']:>16.1f}"
              f"{row['first_step_s_compiled']:>14.1f}")
    return out


def profile_block(name: str, stage: int, batch: int) -> dict[str, float]:
    """Share of one MobileViT block's forward time per op group (CPU, self time)."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # silence the profiler's start/stop lines
    from torch.profiler import ProfilerActivity, profile

    model = mobilevit.create_model(name).eval()
    blk = model.stages[stage][-1]
    size = model.spec.stage_sizes(RES)[stage]
    x = torch.randn(batch, model.spec.stages[stage].out_channels, *size)
    with torch.no_grad():
        for _ in range(3):
            blk(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                blk(x)
    # MAC share of the same groups, to compare with the time share.
    macs, mac_groups = count_macs(blk, x)
    totals = {k: 0.0 for k in (*OP_GROUPS, "other")}
    for evt in prof.key_averages():
        group = next((g for g, ops in OP_GROUPS.items() if evt.key in ops), "other")
        totals[group] += evt.self_cpu_time_total
    total = sum(totals.values())
    shares = {f"{k}_share": v / total for k, v in totals.items()}
    shares.update({f"{k}_mac_share": v / macs for k, v in mac_groups.items()})

    # Second, independent estimate: time the patch-layout ops alone on the block's real shapes.
    spec = blk.spec
    dim = spec.dim
    feats = torch.randn(batch, dim, *size)
    ph, pw = spec.patch_size
    tokens = blk.layout == "tokens"

    def layout_ops() -> None:
        p = mobilevit.layers.unfold_patches(feats, ph, pw)
        if tokens:
            p = p.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        mobilevit.layers.fold_patches(p.contiguous(), ph, pw, *size)

    with torch.no_grad():
        t_layout = _timeit(layout_ops, warmup=3, repeats=20, sync=lambda: None)
        t_block = _timeit(lambda: blk(x), warmup=3, repeats=20, sync=lambda: None)
    shares["isolated_layout_ops_share"] = t_layout / t_block
    shares["block_ms"] = t_block * 1e3
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", default="bench/results/model_speed.json")
    parser.add_argument("--timm-only", action="store_true",
                        help="only the side-by-side comparison with timm (needs make bench-env) "
                             "and torch.compile against eager; the JSON goes to --out")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.timm_only:
        tuned = tune_cpu_allocator()
        timm = compare_timm(args.quick)
        write_results(args.out, {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                 "allocator_tuned": tuned, "timm": timm,
                                 "compile": compare_compile(args.quick)})
        return

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict[str, object] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "resolution": RES, "models": {}, "blocks": {},
    }
    # glibc's default allocator first: tune_cpu_allocator cannot be undone within a process.
    print("measuring batch-32 CPU forward with glibc's default allocator ...")
    default_malloc = {name: measure_model(name, "cpu", quick=True, batches=(32,),
                                          train=False)["forward_b32_img_s"] for name in MODELS}
    results["allocator_tuned"] = tune_cpu_allocator()
    for device in devices:
        setting = ("AMP bf16, channels-last, torch.compile" if device == "cuda"
                   else f"{torch.get_num_threads()} threads, fp32, eager, tuned allocator")
        print(f"\n{device.upper()} ({setting}), {RES}x{RES}, images/s")
        print(f"{'model':<18}{'params':>11}{'fwd b1':>9}{'fwd b32':>9}{'train b32':>11}"
              f"{'fwd b32 vs XXS':>16}" + (f"{'fwd b32 glibc default':>23}{'tuned gain':>12}"
                                            if device == "cpu" else ""))
        base = None
        for name in MODELS:
            r = measure_model(name, device, quick=args.quick)
            base = base or r["forward_b32_img_s"]
            params = mobilevit.num_params(mobilevit.create_model(name))
            row = f"{name:<18}{params:>11,}{r['forward_b1_img_s']:>9.1f}" \
                  f"{r['forward_b32_img_s']:>9.1f}{r['train_b32_img_s']:>11.1f}" \
                  f"{r['forward_b32_img_s'] / base:>16.2f}"
            if device == "cpu":
                r["forward_b32_img_s_glibc_default"] = default_malloc[name]
                gain = r["forward_b32_img_s"] / default_malloc[name]
                row += f"{default_malloc[name]:>23.1f}{gain:>11.2f}x"
            results["models"].setdefault(device, {})[name] = {"params": params, **r}  # type: ignore[union-attr]
            print(row)

    print("\nOne block, CPU forward, share of self time per op group (torch.profiler)")
    print(f"{'block':<37}{'batch':>6}{'ms':>9}{'reshape/copy':>14}{'(patching)':>12}{'conv':>7}"
          f"{'linear':>8}{'attention':>11}{'norm':>7}{'other':>7}")
    for label, name, stage in (("v1-S layer3 (tokens, MHSA)", "mobilevit_s", 2),
                               ("v2-1.0 layer3 (channels, separable)", "mobilevitv2_100", 2)):
        for batch in (1, 32):
            s = profile_block(name, stage, batch)
            results["blocks"][f"{name}/stage{stage}/b{batch}"] = s  # type: ignore[index]
            print(f"{label:<37}{batch:>6}{s['block_ms']:>9.2f}{s['reshape/copy_share']:>14.1%}"
                  f"{s['isolated_layout_ops_share']:>12.1%}{s['conv_share']:>7.1%}"
                  f"{s['linear_share']:>8.1%}{s['attention_share']:>11.1%}"
                  f"{s['norm_share']:>7.1%}{s['other_share']:>7.1%}")
            print(f"{'  MAC share':<43}{'':>9}{'':>14}{'':>12}"
                  f"{s.get('conv_mac_share', 0):>7.1%}{s.get('linear_mac_share', 0):>8.1%}"
                  f"{s.get('attention_mac_share', 0):>11.1%}{s.get('norm_mac_share', 0):>7.1%}"
                  f"{s.get('other_mac_share', 0):>7.1%}")
    print("reshape/copy: every reshape, permute and copy in the block (profiler self time); "
          "(patching): unfold + layout permute + fold timed alone on the block's shapes.")
    print()
    write_results(args.out, results)


if __name__ == "__main__":
    main()
