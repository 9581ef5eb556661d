r"""The meta fusion layers vs explicit per-item weight matrices, at the paper's shapes.

    python bench/fusion.py --shape {tiktok,movielens,kwai} [--cp_rank 16] [--d_s 5] [--device cpu|cuda]

Forward + backward of the fusion tower (Eq. 11/12/15) over all items of the shape, twice in the same
run, with the same parameters, features and meta information:

* package: :class:`~recbole_metammf.model.layers.MetaFusionTower`, which applies ``W_i = W + T x_3 s_i``
  without building it (``h W^T + ((h B) * (s C)) A^T`` with CP, one GEMM against ``T`` without);
* explicit: what the paper's code does — build every item's ``W_i`` (``out x in``) and multiply,
  chunked over items so that one chunk's matrices take at most ``--chunk_mb`` MB.

Both compute the same loss ``sum(out * G)`` (a fixed random ``G``); the script checks that outputs
and the gradients of every parameter and of ``s`` agree, prints both times and ``ratio: <x>``, and
appends them, with the machine and the date, to docs/BENCHMARKS.md. Shapes (NOTES / Table 1):
tiktok 384 -> 32 x 76,085 items, movielens 2276 -> 1024 -> 512 -> 256 -> 32 x 5,986, kwai 2176 -> 32 x 86,483.
"""

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from common import add_report_option, machine, publish, stamp
from recbole_metammf.model.layers import MetaFusionTower

SHAPES = {  # items, concatenated feature width, the paper's best tower
    "tiktok": (76_085, 128 + 128 + 128, [32]),
    "movielens": (5_986, 2048 + 128 + 100, [1024, 512, 256, 32]),
    "kwai": (86_483, 2048 + 128, [32]),
}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def package_pass(tower, features, meta, target):
    out = tower(features, meta)
    (out * target).sum().backward()
    return out.detach()


def explicit_pass(tower, features, meta, target, chunk):
    r"""The same tower with each item's ``W_i`` built (``item_weights``), ``chunk`` items at a time;
    per-chunk backward accumulates the same gradients as one pass, since the loss is a sum over items."""
    outputs = []
    for start in range(0, features.shape[0], chunk):
        h = features[start : start + chunk]
        s = meta[start : start + chunk]
        for n, layer in enumerate(tower.layers):
            if n > 0:
                h = F.leaky_relu(h)
            h = torch.bmm(layer.item_weights(s), h.unsqueeze(-1)).squeeze(-1)
        (h * target[start : start + chunk]).sum().backward()
        outputs.append(h.detach())
    return torch.cat(outputs)


def gradients(tower, meta):
    grads = {name: p.grad.clone() for name, p in tower.named_parameters()}
    grads["s"] = meta.grad.clone()
    tower.zero_grad(set_to_none=True)
    meta.grad = None
    return grads


def timed(device, fn):
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def max_relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()


def largest_difference(package_out, package_grads, explicit_out, explicit_grads):
    r"""``(what, relative difference)`` of the two paths' output or gradient that differ most."""
    errors = {"output": max_relative_error(package_out, explicit_out)}
    errors.update({f"grad {name}": max_relative_error(package_grads[name], explicit_grads[name]) for name in package_grads})
    worst = max(errors, key=errors.get)
    return worst, errors[worst]


def differences(tower, features, meta, target, chunk):
    r"""Both paths once, untimed; their :func:`largest_difference`."""
    package_out = package_pass(tower, features, meta, target)
    package_grads = gradients(tower, meta)
    explicit_out = explicit_pass(tower, features, meta, target, chunk)
    return largest_difference(package_out, package_grads, explicit_out, gradients(tower, meta))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("--cp_rank", type=int, default=16, help="R; 0 = the full tensor T (default: 16)")
    parser.add_argument("--d_s", type=int, default=5, help="length of the meta information (default: 5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed package passes per round, median taken (default: 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (package passes, one explicit pass), each giving a ratio; min / median / max reported (default: 3)")
    parser.add_argument("--chunk_mb", type=int, default=256, help="memory of one chunk of W_i (default: 256)")
    parser.add_argument("--check_items", type=int, default=256, help="items of the float64 equality check (default: 256)")
    parser.add_argument("--items", type=int, default=None, help="fewer items than the shape's (a quick check)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=2020)
    add_report_option(parser)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    n_items, in_dim, layers = SHAPES[args.shape]
    n_items = args.items or n_items
    torch.manual_seed(args.seed)
    tower = MetaFusionTower(in_dim, layers, args.d_s, args.cp_rank).to(device)
    features = torch.rand(n_items, in_dim, device=device)  # min-max normalised features lie in [0, 1]
    meta = torch.randn(n_items, args.d_s, device=device, requires_grad=True)
    target = torch.randn(n_items, layers[-1], device=device)

    widths = [in_dim] + layers
    floats_per_item = sum(widths[n] * widths[n + 1] for n in range(len(layers)))
    chunk = max(1, args.chunk_mb * 2**20 // (4 * floats_per_item))
    all_weights_gb = n_items * floats_per_item * 4 / 1e9

    package_pass(tower, features, meta, target)  # warm-up (allocator, kernels)
    gradients(tower, meta)
    package_times, explicit_times = [], []
    for _ in range(args.rounds):  # the two paths alternate, so a slow spell of the machine hits both
        package_seconds = []
        for _ in range(args.repeats):
            seconds, package_out = timed(device, lambda: package_pass(tower, features, meta, target))
            package_seconds.append(seconds)
            package_grads = gradients(tower, meta)
        package_times.append(statistics.median(package_seconds))
        seconds, explicit_out = timed(device, lambda: explicit_pass(tower, features, meta, target, chunk))
        explicit_times.append(seconds)
        explicit_grads = gradients(tower, meta)
    ratios = sorted(e / p for e, p in zip(explicit_times, package_times))
    package_time, explicit_time = statistics.median(package_times), statistics.median(explicit_times)

    worst32, error32 = largest_difference(package_out, package_grads, explicit_out, explicit_grads)
    # equality is checked in float64, where only a wrong formula leaves a difference: in float32 the
    # explicit path's gradient of s sums in*out products per item and loses digits to cancellation
    n_check = min(n_items, args.check_items)
    tower64 = copy.deepcopy(tower).double()
    meta64 = meta.detach()[:n_check].double().requires_grad_()
    worst, error = differences(tower64, features[:n_check].double(), meta64, target[:n_check].double(), chunk)
    same = error < 1e-9
    ratio = statistics.median(ratios)

    tower_text = " -> ".join(str(w) for w in widths)
    form = f"CP rank {args.cp_rank}" if args.cp_rank > 0 else "full tensor T"
    command = f"python bench/fusion.py --shape {args.shape}" + (
        f" --cp_rank {args.cp_rank}" if args.cp_rank != 16 else ""
    ) + (f" --d_s {args.d_s}" if args.d_s != 5 else "") + (f" --items {args.items}" if args.items else "")
    command += f" --device {args.device}" if device.type != "cpu" else ""
    publish(report=args.report, lines=[
        f"### Fusion: {args.shape} shape, {form}",
        "",
        f"`{command}` — {stamp()}, {machine()}, device {device}, {torch.get_num_threads()} threads.",
        f"Tower {tower_text}, d_s {args.d_s}, {n_items:,} items, forward + backward of all items.",
        "",
        "| fusion | seconds |",
        "| --- | --- |",
        f"| this package (W_i never built; median over {args.rounds} rounds of the median of {args.repeats}) | {package_time:.4f} |",
        f"| explicit per-item W_i ({chunk:,} items per chunk; {all_weights_gb:,.1f} GB if built at once; median of {args.rounds}) | {explicit_time:.2f} |",
        "",
        f"same outputs and gradients: {'yes' if same else 'NO'} (float64, first {n_check:,} items: largest relative "
        f"difference {error:.1e}, {worst}; float32, all items: {error32:.1e}, {worst32})",
        "",
        f"ratio per round (explicit / package), min / median / max of {args.rounds}: "
        f"{ratios[0]:.1f} / {ratio:.1f} / {ratios[-1]:.1f}",
        "",
        f"ratio: {ratio:.1f}",
        "",
    ])
    if not same:
        raise SystemExit(f"error: the two fusions disagree ({worst}: relative difference {error:.1e} in float64)")


if __name__ == "__main__":
    main()
