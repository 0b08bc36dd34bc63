"""Recording overhead: one training step of ResNet-18 CIFAR (batch 32, SGD) with and without
``accelsim.record`` (issue 10 target, trace format v2 with every op of the step recorded: recorded
step <= 1.1x an unrecorded step, on CPU; issue 2's was 1.5x). ``--model gpt-block`` measures the
GPT-style blocks (SDPA attention, many small vector ops) instead.

Recorded and unrecorded iterations alternate inside one ``with accelsim.record(...)`` block, so both
see the same machine load; the table gives the median of each and their ratio in wall time and in
process CPU time (all threads; steadier than wall time on a shared machine), plus the one-off cost
of writing the header at the end and the trace size.

    python benchmarks/bench_record.py [--model resnet18-cifar|gpt-block] [--batch 32] [--pairs 3]
                                      [--threads N] [--out x.npz]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import accelsim
from accelsim.trace.format import load_trace


def build(name: str) -> torch.nn.Module:
    from accelsim.models.zoo import build_model

    return build_model(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18-cifar", choices=("resnet18-cifar", "gpt-block"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pairs", type=int, default=3, help="recorded/unrecorded iteration pairs")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--out", default=None, help="trace path (default: a temp file, removed)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    # iterations: warmup, then unrecorded / recorded alternating
    recorded = [args.warmup + 2 * i + 1 for i in range(args.pairs)]
    total = args.warmup + 2 * args.pairs
    out = args.out or os.path.join(tempfile.mkdtemp(), "bench.npz")
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    with accelsim.record(model, out, steps=recorded, model_name=args.model, method="dense",
                         batch_size=args.batch) as rec:
        for i in range(total):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= args.warmup:
                times[i in recorded].append(dt)
                cpu[i in recorded].append(dc)
        t_close = time.perf_counter()
    t_close = time.perf_counter() - t_close
    size = os.path.getsize(out)
    tr = load_trace(out)
    base, rec_t = statistics.median(times[False]), statistics.median(times[True])
    cbase, crec = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"{args.model}, batch {args.batch}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    print(f"{'':28}{'wall s':>9}{'CPU s':>9}   wall of each step (s)")
    print(f"{'unrecorded step (median)':28}{base:9.3f}{cbase:9.3f}   {' '.join(f'{t:.3f}' for t in times[False])}")
    print(f"{'recorded step (median)':28}{rec_t:9.3f}{crec:9.3f}   {' '.join(f'{t:.3f}' for t in times[True])}")
    print(f"{'ratio recorded/unrecorded':28}{rec_t / base:9.2f}{crec / cbase:9.2f}   (target <= 1.1)")
    print(f"{'closing the file (once)':28}{t_close:10.3f}")
    nvec = sum(o.kind == "vector" for o in tr.ops) // args.pairs
    print(f"trace: {len(tr.ops) // args.pairs} ops ({nvec} vector records), {len(tr.saved) // args.pairs} saved "
          f"records per step, "
          f"{len(tr.tensors)} unique tensors, {size / 1e6:.1f} MB for {args.pairs} steps")
    tr.close()
    if args.out is None:
        os.remove(out)


if __name__ == "__main__":
    main()
