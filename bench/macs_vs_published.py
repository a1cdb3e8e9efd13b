"""How our MAC count relates to each published "FLOPs" figure.

    python bench/macs_vs_published.py [--out bench/results/macs_vs_published.json]

For every fixed point, prints our fvcore count at 256x256 (conv, linear, both attention matmuls,
norms) beside the published number, and our count redone the way the publisher counted:

* the cvnets profiler (Apple's code, used for the v2 paper's tables and the v3 README): conv and
  linear MACs plus, for each multi-head attention layer, 2 * N * d^2 * P instead of the true
  2 * N^2 * d * P (N patches, P pixels per patch, d width); norms and element-wise ops are not
  counted; at 256x256.
* the v1 paper's MobileViT-XS "0.7 G" states no resolution; it equals conv+linear MACs at 224x224.

A published figure "matches" when our paper-method count, rounded to the printed precision (0.1 G in
the papers, 1 M in the v3 README), equals it.
"""

from __future__ import annotations

import argparse

from _results import write_results

import mobilevit
from mobilevit import ArchSpec
from nas.profile import profile


def cvnets_attention_term(spec: ArchSpec, resolution: int) -> int:
    """The cvnets profiler's multi-head attention count for ``spec`` at ``resolution``."""
    total = 0
    for stage, (h, w) in zip(spec.stages, spec.block_input_sizes(resolution), strict=True):
        blk = stage.block
        if blk is None or blk.attention != "mhsa":
            continue
        ph, pw = blk.patch_size
        n = (-(-h // ph)) * (-(-w // pw))
        total += blk.depth * 2 * n * blk.dim * blk.dim * ph * pw
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/macs_vs_published.json")
    args = parser.parse_args()
    rows = []
    header = (f"{'model':<20}{'ours fvcore@256':>16}{'published':>11}{'ours/pub':>10}"
              f"{'ours, publisher method':>38}{'that/pub':>9}{'matches':>9}")
    print(header)
    for name, fp in mobilevit.FIXED_POINTS.items():
        pub = fp.published
        p256 = profile(fp.spec, 256)
        published = pub.macs_g * 1e9 if pub.macs_g is not None else None
        conv_linear = p256.macs_by_group.get("conv", 0) + p256.macs_by_group.get("linear", 0)
        if pub.macs_resolution is None:
            p224 = profile(fp.spec, 224)
            method = "conv+linear @224"
            same_way = p224.macs_by_group.get("conv", 0) + p224.macs_by_group.get("linear", 0)
        else:
            method = "cvnets profiler @256"
            same_way = conv_linear + cvnets_attention_term(fp.spec, 256)
        unit = 1e6 if fp.paper == "v3" else 1e8  # printed precision: 1 M or 0.1 G
        matches = round(same_way / unit) == round(published / unit)
        row = {"name": name, "ours_fvcore_256": p256.macs, "published": published,
               "published_counter": pub.macs_counter, "paper_method": method,
               "ours_paper_method": same_way, "matches_at_printed_precision": matches,
               "ours_over_published": p256.macs / published,
               "paper_method_over_published": same_way / published}
        rows.append(row)
        print(f"{name:<20}{p256.macs / 1e6:>14.1f} M{published / 1e6:>9.0f} M"
              f"{row['ours_over_published']:>10.3f}{same_way / 1e6:>14.1f} M {method:<21}"
              f"{row['paper_method_over_published']:>9.3f}{'yes' if matches else 'no':>9}")
    misses = [abs(r["paper_method_over_published"] - 1) for r in rows
              if not r["matches_at_printed_precision"]]
    print(f"\n{len(rows) - len(misses)} of {len(rows)} published figures match our count redone "
          "the publisher's way, at the printed precision"
          + (f"; the others are within {max(misses):.1%}." if misses else "."))
    write_results(args.out, rows)


if __name__ == "__main__":
    main()
