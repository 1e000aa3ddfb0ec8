#!/usr/bin/env python3
"""Compare egpu's NVIDIA runtime with CUDA (through PyTorch) on the same GPU, in one run.

Runs `nv_suite --bench` (our numbers), then measures the same things with PyTorch:
  launch submit cost   CPU time per launch of a trivial kernel (torch.cuda._sleep(0)), no sync
  launch end-to-end    launch + synchronize, median
  copy bandwidth       pinned host <-> device and device <-> device, best of 5, same size
and prints ratios. Goals (issue 3): submit cost <= 0.5x CUDA's, copy bandwidth >= 0.95x.
"""
import argparse
import statistics
import subprocess
import sys
import time


def ours(binary, nbytes):
    out = subprocess.run([binary, "--bench", "--bytes", str(nbytes)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"our benchmark failed:\n{out.stdout}\n{out.stderr}")
    if out.stdout.startswith("SKIP"):
        print(out.stdout.strip())
        sys.exit(0)
    values = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        values[key] = value
    return values


def cuda(nbytes):
    import torch

    assert torch.cuda.is_available(), "PyTorch sees no CUDA device"
    dev = torch.device("cuda:0")
    torch.cuda._sleep(0)
    torch.cuda.synchronize()
    n = 10000
    t0 = time.perf_counter()
    for _ in range(n):
        torch.cuda._sleep(0)
    submit_us = (time.perf_counter() - t0) / n * 1e6
    torch.cuda.synchronize()
    e2e = []
    for _ in range(2000):
        t0 = time.perf_counter()
        torch.cuda._sleep(0)
        torch.cuda.synchronize()
        e2e.append((time.perf_counter() - t0) * 1e6)
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    a = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    b = torch.empty(nbytes, dtype=torch.uint8, device=dev)

    def bw(dst, src):
        best = float("inf")
        for _ in range(5):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            dst.copy_(src, non_blocking=True)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return nbytes / best / 1e9

    return {
        "device": torch.cuda.get_device_name(0),
        "launch_submit_us": submit_us,
        "launch_end_to_end_us": statistics.median(e2e),
        "h2d_gbps": bw(a, host),
        "d2h_gbps": bw(host, a),
        "d2d_gbps": bw(b, a),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True, help="path of the nv_suite binary")
    ap.add_argument("--bytes", type=int, default=256 << 20)
    args = ap.parse_args()
    mine = ours(args.ours, args.bytes)
    try:
        peer = cuda(args.bytes)
    except Exception as e:  # report ours even without PyTorch
        print("\n".join(f"{k} {v}" for k, v in mine.items()))
        sys.exit(f"PyTorch measurement unavailable: {e}")
    print(f"egpu:  {mine.get('device')}")
    print(f"CUDA:  {peer['device']} (PyTorch)")
    print(f"{'metric':24} {'egpu':>12} {'CUDA':>12} {'ratio':>8}  goal")
    goals = {"launch_submit_us": "<= 0.50", "h2d_gbps": ">= 0.95", "d2h_gbps": ">= 0.95", "d2d_gbps": ">= 0.95"}
    failed = False
    for key in ["launch_submit_us", "launch_end_to_end_us", "h2d_gbps", "d2h_gbps", "d2d_gbps"]:
        ours_v, cuda_v = float(mine[key]), float(peer[key])
        ratio = ours_v / cuda_v if cuda_v else float("nan")
        goal = goals.get(key, "")
        if goal:
            op, target = goal.split()
            ok = ratio <= float(target) if op == "<=" else ratio >= float(target)
            failed |= not ok
            goal += " ok" if ok else " MISSED"
        print(f"{key:24} {ours_v:12.3f} {cuda_v:12.3f} {ratio:8.3f}  {goal}")
    for key in ["launches_per_second", "stream_gbps"]:
        print(f"{key:24} {float(mine[key]):12.3f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
