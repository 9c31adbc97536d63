"""Point-cloud scale: Point Transformer V3 on 10k-1M points against kNN attention, and the
point ops against naive Python loops, on CPU.

    python benchmarks/bench_point_scale.py [--sizes 10000 100000 1000000] [--width 32]
        [--runs 2] [--threads 2] [--quick] [--out ...md] [--json ...json]

Clouds are synthetic rooms (``make_scene_cloud``: floor, walls, objects; xyz + colour) of N
points, voxelised at ``grid_size = sqrt(60 m^2 / N)`` (about one point per voxel). Every case
runs in a fresh process (peak memory: ``_common.peak_rss_mib`` of one call, glibc returning
freed memory; the first call is also the warm-up), capped at ``--mem-gib`` of address space
and ``--timeout-s`` seconds: a case over either is reported as such, not dropped.

- ``ptv3``: the whole backbone, small: encoder 32-64-128-256 and decoder 32-64-128 (x width /
  32), one block per stage, patches of 1024, xCPE (hashed sparse conv), stem kernel 5;
- ``serialized``: one level of two blocks of width ``--width`` (2 heads, patches of 1024, no
  positional encoding), timed with the serialization (2 curves) and patching it needs;
- ``knn``: the same two blocks with attention over each point's ``--k`` nearest neighbours
  (PTv1 / PTv2-style local attention, keys and values gathered, softmax through
  ``ops.attention``), given the neighbours; ``knn search``: finding them with ``ops.knn``
  (chunked brute force, O(N^2)), timed alone where it fits the timeout. Ratio = (search +
  blocks) / serialized.

Ops against loops (fresh process each, equal results checked): farthest point sampling,
kNN and z / Hilbert serialization.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import time
from pathlib import Path

import _common as common

RESULTS_MD = common.RESULTS / "point_scale.md"


# ---------------------------------------------------------------- worker side


def _scene(n: int):
    import numpy as np
    import torch

    from visionfm.data.synthetic.points import make_scene_cloud

    scene = make_scene_cloud(np.random.default_rng(0), n)
    pts = np.concatenate([scene["coord"], scene["color"]], 1).astype(np.float32)
    return torch.from_numpy(pts), torch.tensor([n]), math.sqrt(60.0 / n)


def _knn_blocks(width: int, depth: int):
    """``depth`` pre-norm blocks of kNN attention + MLP: ``f(x (N, C), idx (N, k))``."""
    import torch.nn as nn

    from visionfm.layers.mlp import Mlp
    from visionfm.ops.attention import attention

    class KnnBlock(nn.Module):
        def __init__(self, dim: int, heads: int = 2) -> None:
            super().__init__()
            self.heads, self.norm1, self.norm2 = heads, nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.q, self.kv, self.proj = (
                nn.Linear(dim, dim),
                nn.Linear(dim, 2 * dim),
                nn.Linear(dim, dim),
            )
            self.mlp = Mlp(dim, 4 * dim)

        def forward(self, x, idx):
            n, c = x.shape
            h = self.norm1(x)
            q = self.q(h).view(n, self.heads, 1, c // self.heads)  # (N, heads, 1, D)
            kv = self.kv(h)[idx].view(n, idx.shape[1], 2, self.heads, c // self.heads)
            k, v = kv.permute(2, 0, 3, 1, 4)  # (N, heads, k, D) each
            out = attention(q, k, v).reshape(n, c)
            x = x + self.proj(out)
            return x + self.mlp(self.norm2(x))

    return nn.ModuleList(KnnBlock(width) for _ in range(depth))


def _case_fn(case: dict):
    """The callable a worker times, and a description."""
    import torch

    from visionfm.backbones import PointTransformerV3
    from visionfm.backbones.point_serialized_blocks import Level, SerializedBlock
    from visionfm.ops.point_grid import serialize, voxelize
    from visionfm.ops.point_sampling import knn

    points, offsets, grid_size = _scene(case["n"])
    w, train = case["width"], case["pass"] == "fwd+bwd"
    gen = torch.Generator().manual_seed(0)
    if case["kind"] == "ptv3":
        s = w // 32 or 1
        model = PointTransformerV3(
            in_channels=6, grid_size=grid_size, enc_depths=(1, 1, 1, 1),
            enc_channels=(32 * s, 64 * s, 128 * s, 256 * s), enc_num_heads=(2, 4, 8, 16),
            enc_patch_size=(1024,) * 4, dec_depths=(1, 1, 1),
            dec_channels=(32 * s, 64 * s, 128 * s), dec_num_heads=(2, 4, 8),
            dec_patch_size=(1024,) * 3, drop_path_rate=0.0, shuffle_orders=False,
        )  # fmt: skip

        def run():
            return model(points, offsets)["points"]

    elif case["kind"] == "serialized":
        blocks = torch.nn.ModuleList(SerializedBlock(w, 2, 1024, pos_embed=None) for _ in range(2))
        x0 = torch.randn(len(points), w, generator=gen)

        def run():
            batch, grid = voxelize(points[:, :3], offsets, grid_size)
            level = Level(grid, batch, offsets, int(grid.max()).bit_length(), ("z", "hilbert"))
            x = x0.requires_grad_(train)
            for i, blk in enumerate(blocks):
                x = blk(x, level, i)
            return x

    elif case["kind"] == "knn":
        blocks = _knn_blocks(w, 2)
        x0 = torch.randn(len(points), w, generator=gen)
        # the blocks' cost depends on how many neighbours and how scattered, not on which:
        # the k nearest along the z curve stand in for the kNN (whose search is timed apart)
        batch, grid = voxelize(points[:, :3], offsets, grid_size)
        perm = serialize(grid, batch, "z").order
        window = torch.arange(len(points))[:, None] + torch.arange(case["k"]) - case["k"] // 2
        idx = torch.empty_like(window)
        idx[perm] = perm[window.clamp(0, len(points) - 1)]

        def run():
            x = x0.requires_grad_(train)
            for blk in blocks:
                x = blk(x, idx)
            return x

    else:  # knn search

        def run():
            return knn(points[:, :3], offsets, points[:, :3], offsets, case["k"])[0]

    if not train:
        return lambda: torch.no_grad()(run)()
    return lambda: run().square().mean().backward()


def _op_fns(case: dict) -> dict:
    """{'ours': fn, 'loop': fn} of one op on its size; each returns a comparable result."""
    import torch

    from visionfm.ops.point_grid import serialize
    from visionfm.ops.point_sampling import farthest_point_sampling, knn

    gen = torch.Generator().manual_seed(0)
    n, clouds = case["n"], case["clouds"]
    coords = torch.rand(n * clouds, 3, generator=gen)
    offsets = torch.arange(1, clouds + 1) * n
    if case["op"] == "fps":
        m = case["samples"]

        def loop():
            out = []
            for b in range(clouds):
                xyz = coords[b * n : (b + 1) * n]
                dist, chosen = torch.full((n,), float("inf")), [0]
                for _ in range(m - 1):
                    dist = torch.minimum(dist, ((xyz - xyz[chosen[-1]]) ** 2).sum(1))
                    chosen.append(int(dist.argmax()))
                out += [b * n + c for c in chosen]
            return torch.tensor(out)

        return {"ours": lambda: farthest_point_sampling(coords, offsets, m)[0], "loop": loop}
    if case["op"] == "knn":

        def loop():
            rows = []
            for i in range(len(coords)):
                b = i // n
                d = ((coords[b * n : (b + 1) * n] - coords[i]) ** 2).sum(1)
                rows.append(torch.topk(d, 16, largest=False).indices + b * n)
            return torch.stack(rows)

        return {"ours": lambda: knn(coords, offsets, coords, offsets, 16)[0], "loop": loop}
    grid = (coords * 1023).long()
    batch = torch.arange(clouds).repeat_interleave(n)
    order = case["op"].split("-")[1]

    def loop():  # bit by bit in Python ints, per point (Pointcept's / Skilling's definition)
        codes = []
        for (x, y, z), b in zip(grid.tolist(), batch.tolist(), strict=True):
            v = [x, y, z] if order == "z" else _hilbert_axes([x, y, z], 10)
            code = 0
            for bit in range(10):
                for axis in range(3):
                    code |= ((v[axis] >> bit) & 1) << (3 * bit + 2 - axis)
            codes.append(b << 30 | code)
        return torch.tensor(codes)

    return {"ours": lambda: serialize(grid, batch, order, 10).codes, "loop": loop}


def _hilbert_axes(x: list[int], bits: int) -> list[int]:
    """Skilling's AxestoTranspose, one point, in Python ints."""
    m = 1 << (bits - 1)
    q = m
    while q > 1:
        p = q - 1
        for i in range(3):
            if x[i] & q:
                x[0] ^= p
            else:
                t = (x[0] ^ x[i]) & p
                x[0] ^= t
                x[i] ^= t
        q >>= 1
    for i in (1, 2):
        x[i] ^= x[i - 1]
    t, q = 0, m
    while q > 1:
        if x[2] & q:
            t ^= q - 1
        q >>= 1
    return [v ^ t for v in x]


def run_worker(case: dict) -> dict:
    import torch

    torch.set_num_threads(case["threads"])
    cap = int(case["mem_gib"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        if "op" in case:
            fns = _op_fns(case)
            out = {name: fn() for name, fn in fns.items()}
            wall, _ = common.time_in_turns(fns, case["runs"])
            equal = bool(torch.equal(out["ours"], out["loop"]))
            return dict(ms=common.median_ms(wall), equal=equal)
        fn = _case_fn(case)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        peak, exact = common.peak_rss_mib(fn)  # the warm-up call; timed where runs == 0
        wall = {"run": [time.perf_counter() - start_wall]}
        cpu = {"run": [time.process_time() - start_cpu]}
        if case["runs"]:
            wall, cpu = common.time_in_turns({"run": fn}, case["runs"])
        return dict(ms=common.median_ms(wall)["run"], cpu_ms=common.median_ms(cpu)["run"],
                    peak_mib=peak, exact=exact, first_call_timed=not case["runs"])  # fmt: skip
    except (MemoryError, RuntimeError) as err:
        if "alloc" not in str(err) and not isinstance(err, MemoryError):
            raise
        return dict(error=f"out of memory (cap {case['mem_gib']} GiB)")


# ---------------------------------------------------------------- driver side

KINDS = ("ptv3", "serialized", "knn")


def _cell(r: dict | None, key: str = "ms", spec: str = ".0f") -> str:
    if r is None:
        return "not run"
    return r["error"] if "error" in r else format(r[key], spec)


def _table(data: dict) -> str:
    rows, search, ops = data["rows"], data["search"], data["ops"]
    first = any(r.get("first_call_timed") for r in rows)
    get = {(r["kind"], r["n"], r["pass"]): r for r in rows}
    lines = [
        "# Point-cloud scale: PTv3 vs kNN attention, ops vs loops (CPU)", "",
        common.run_line(data), "",
        *common.busy_note(data, "**The machine was busy (load above the threads used): "
                          "the times are slower than on an idle machine; ratios were taken "
                          "in the same run.**"),
        f"Width {data['width']}, k = {data['k']} neighbours, patches of 1024. Times: median "
        "wall ms; peak: resident-memory rise of one call, MiB. "
        "`knn` blocks are timed given their neighbours; the search (`ops.knn`, brute force) "
        "is its own column, and the ratio is (search + knn blocks) / serialized."
        + (" At 1M points each case is one call, timed (and its memory measured) cold."
           if first else ""), "",
        "| N | pass | PTv3 ms | PTv3 MiB | serialized ms | serialized MiB | knn blocks ms "
        "| knn MiB | knn blocks / serialized | knn search ms | (search + knn) / serialized |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for n in data["sizes"]:
        s = search.get(str(n))
        for pas in ("fwd", "fwd+bwd"):
            p, a, k = (get.get((kind, n, pas)) for kind in KINDS)
            ratio = blocks = "—"
            if a and k and not any("error" in r for r in (a, k)):
                blocks = f"{k['ms'] / a['ms']:.1f}"
                if s and "error" not in s:
                    ratio = f"{(s['ms'] + k['ms']) / a['ms']:.1f}"
            lines.append(
                f"| {n:,} | {pas} | {_cell(p)} | {_cell(p, 'peak_mib')} | {_cell(a)} | "
                f"{_cell(a, 'peak_mib')} | {_cell(k)} | {_cell(k, 'peak_mib')} | {blocks} | "
                f"{_cell(s)} | {ratio} |"
            )
    lines += ["", "## Ops against naive Python loops", "",
              "| op | size | ours ms | loop ms | speed-up | equal |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in ops:
        lines.append(
            f"| {r['op']} | {r['size']} | {r['ms']['ours']:.1f} | {r['ms']['loop']:.0f} | "
            f"{r['ms']['loop'] / r['ms']['ours']:.0f}x | {'yes' if r['equal'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--runs", type=int, default=2, help="timed calls after the first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=240.0, help="per case")
    parser.add_argument("--mem-gib", type=float, default=10.0, help="address-space cap per case")
    parser.add_argument(
        "--max-search", type=int, default=100_000,
        help="largest N whose brute-force kNN search is run (O(N^2)); above, it is extrapolated",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="10k points, small op sizes")
    parser.add_argument("--out", type=Path, default=RESULTS_MD)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    from tqdm import tqdm

    if args.quick:
        args.sizes, args.runs = [10_000], 1
    base = dict(width=args.width, k=args.k, threads=args.threads, mem_gib=args.mem_gib)
    cases = [
        dict(base, kind=kind, n=n, runs=0 if n >= 1_000_000 else args.runs, **{"pass": pas})
        for n in args.sizes for kind in KINDS for pas in ("fwd", "fwd+bwd")
    ]  # fmt: skip
    cases += [
        dict(base, kind="knn search", n=n, runs=0, **{"pass": "fwd"})
        for n in args.sizes
        if n <= args.max_search
    ]
    small = args.quick
    ops = [
        dict(op="fps", n=2048 if small else 8192, clouds=4, samples=128 if small else 512),
        dict(op="knn", n=1024 if small else 4096, clouds=2),
        dict(op="serialize-z", n=5000 if small else 50_000, clouds=2),
        dict(op="serialize-hilbert", n=5000 if small else 50_000, clouds=2),
    ]
    load_start = os.getloadavg()[0]
    rows, search, op_rows = [], {}, []
    bar = tqdm(total=len(cases) + len(ops), desc="point scale cases", unit="case")
    for case in cases:
        bar.set_postfix_str(f"{case['kind']} {case['n']:,} {case['pass']}")
        try:
            r = common.spawn(__file__, case, common.MALLOC_RETURNS_FREED, args.timeout_s)
        except subprocess.TimeoutExpired:
            r = dict(error=f"over {args.timeout_s:.0f} s")
        if case["kind"] == "knn search":
            search[str(case["n"])] = r
        else:
            rows.append(dict(r, kind=case["kind"], n=case["n"], **{"pass": case["pass"]}))
        bar.update()
    for op in ops:
        bar.set_postfix_str(op["op"])
        r = common.spawn(__file__, dict(op, runs=1, threads=args.threads, mem_gib=args.mem_gib))
        op_rows.append(dict(r, op=op["op"], size=f"{op['clouds']} x {op['n']:,} points"
                            + (f", {op['samples']} samples" if "samples" in op else "")))  # fmt: skip
        bar.update()
    bar.close()
    data = dict(
        common.run_facts("benchmarks/bench_point_scale.py", args.threads, load_start),
        sizes=args.sizes, width=args.width, k=args.k, rows=rows, search=search, ops=op_rows,
    )  # fmt: skip
    done = [n for n in args.sizes if "ms" in search.get(str(n), {})]
    for n in args.sizes:  # the search is quadratic: extrapolate from the largest one run
        if str(n) not in search and done:
            n0 = max(done)
            search[str(n)] = dict(error=f"not run; ~{search[str(n0)]['ms'] * (n / n0) ** 2 / 1e3:,.0f} s "
                                  f"extrapolated (N^2) from {n0:,}")  # fmt: skip
    table = _table(data)
    common.write_results(args.out, table, args.json, data)
    print(table)


if __name__ == "__main__":
    main()
