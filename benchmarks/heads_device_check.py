"""Device check and timings for mil.heads.

    python benchmarks/heads_device_check.py            # CUDA (the default)
    python benchmarks/heads_device_check.py cpu        # the same checks and timings on the CPU

Every head on the device: bag alone == padded in a batch, a training step with aux losses; then a 200k x 384 bag at
inference (time; extra peak memory on CUDA) and training steps of 16 padded bags x <= 2000 x 384 (bags/s).
"""

import argparse
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, ".")
from mil.heads import HEADS, create_head


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def run(dev: torch.device) -> None:
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    for name in HEADS.names():
        head = create_head(name, 12, 3).to(dev).eval()
        bags = [torch.randn(n, 12, device=dev) for n in (7, 1, 20, 13)]
        x = 10 * torch.randn(4, 26, 12, device=dev)
        mask = torch.zeros(4, 26, dtype=torch.bool, device=dev)
        for i, b in enumerate(bags):
            pos = torch.randperm(26, device=dev)[: len(b)].sort().values
            x[i, pos] = b
            mask[i, pos] = True
        with torch.no_grad():
            out = head(x, mask)
            err = 0.0
            for i, b in enumerate(bags):
                a = head(b[None], torch.ones(1, len(b), dtype=torch.bool, device=dev))
                err = max(err, (out.logits[i] - a.logits[0]).abs().max().item())
                if a.attention is not None:
                    err = max(err, (out.attention[i][:, mask[i]] - a.attention[0]).abs().max().item())
        head.train()
        o = head(x, mask, torch.tensor([0, 2, 1, 1], device=dev))
        (
            F.cross_entropy(o.logits, torch.tensor([0, 2, 1, 1], device=dev)) + sum(o.aux_losses.values())
        ).backward()
        print(f"{name:12s} alone-vs-padded max err {err:.2e} aux {list(o.aux_losses)}", flush=True)
    x = torch.randn(1, 200_000, 384, device=dev)
    m = torch.ones(1, 200_000, dtype=torch.bool, device=dev)
    for name in ["abmil", "gated_abmil", "clam_sb", "clam_mb", "dsmil", "scemila", "transmil"]:
        head = create_head(name, 384, 3).to(dev).eval()
        with torch.no_grad():
            head(x[:, :1000], m[:, :1000])
            sync(dev)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            t = time.perf_counter()
            o = head(x, m)
            sync(dev)
            dt = time.perf_counter() - t
        peak = f", extra peak {(torch.cuda.max_memory_allocated() - base) / 2**20:.0f} MiB" if cuda else ""
        print(
            f"{name:12s} 200k x 384 eval: {dt * 1000:.0f} ms{peak}, att sum {o.attention.sum().item():.4f}",
            flush=True,
        )
    # training throughput: batches of 16 bags x 2000 x 384 (padded, sizes 1000-2000), fwd+bwd+adam
    g = torch.Generator(device="cpu").manual_seed(0)
    sizes = torch.randint(1000, 2001, (16,), generator=g)
    xb = torch.randn(16, 2000, 384, device=dev)
    mb = (torch.arange(2000)[None] < sizes[:, None]).to(dev)
    yb = torch.randint(0, 3, (16,), device=dev)
    for name in HEADS.names():
        head = create_head(name, 384, 3).to(dev).train()
        opt = torch.optim.Adam(head.parameters(), 1e-4)
        for i in range(13):
            if i == 3:
                sync(dev)
                t = time.perf_counter()
            o = head(xb, mb, yb)
            loss = F.cross_entropy(o.logits, yb) + sum(o.aux_losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(dev)
        dt = (time.perf_counter() - t) / 10
        print(
            f"{name:12s} train step 16 bags x <=2000 x 384: {dt * 1000:.1f} ms ({16 / dt:.0f} bags/s)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "device", nargs="?", default="cuda", help="a torch device: cuda (default), cuda:1, cpu"
    )
    args = parser.parse_args()
    try:
        dev = torch.device(args.device)
    except RuntimeError:
        raise SystemExit(f"device {args.device!r}: not a torch device; use cuda, cuda:N or cpu") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run `python benchmarks/heads_device_check.py cpu` for the CPU")
    run(dev)


if __name__ == "__main__":
    main()
