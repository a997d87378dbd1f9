"""Cells per second of the torch encoders at each precision, interleaved A/B in one run (the CPU here is shared
and noisy, so only ratios measured side by side mean anything), plus how far each precision's embeddings move
from fp32 (cosine similarity on the same crops).

Random weights (loudly warned) are fine for timing: the arithmetic is the same as with DinoBloom's. Their
layer-scale gammas are set to 1 so that the cosine column measures real precision loss.

Run:
    /work/venv/bin/python benchmarks/encoders.py                        # dinobloom-s, CPU, fp32 vs bf16
    python3 benchmarks/encoders.py --device cuda --precisions fp32,auto,bf16,fp16 --batch 256
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from features.encoders import RandomWeightsWarning, create_encoder


def crops(n: int, px: int, seed: int = 0) -> np.ndarray:
    """Cell-like test crops: a dark disc (nucleus) in a paler one (cytoplasm) on light background, plus noise,
    so attention and norms see structure rather than white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:px, 0:px] / px - 0.5
    out = np.empty((n, px, px, 3), np.uint8)
    for i in range(n):
        r = np.hypot(yy - rng.normal(0, 0.05), xx - rng.normal(0, 0.05))
        img = np.full((px, px, 3), (236, 226, 234), np.float32)
        img[r < rng.uniform(0.25, 0.4)] = (160, 165, 220)
        img[r < rng.uniform(0.12, 0.22)] = (95, 45, 125)
        img += rng.normal(0, 6, img.shape)
        out[i] = np.clip(img, 0, 255)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", default="dinobloom-s")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per precision, interleaved")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; {args.rounds} interleaved rounds")

    for enc_name in args.encoders.split(","):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            encs = {p: create_encoder(enc_name, weights="random", device=args.device, precision=p)
                    for p in args.precisions.split(",")}  # fmt: skip
        base = next(iter(encs.values()))
        with torch.no_grad():  # layer scale starts at 1e-5, which makes a random ViT nearly the identity and
            for pname, param in base.model.named_parameters():  # hides precision loss; trained ones are O(1)
                if pname.endswith(".gamma"):
                    param.fill_(1.0)
        state = base.model.state_dict()  # same random weights for every precision
        for enc in encs.values():
            enc.model.load_state_dict({k: v.to(enc.model.state_dict()[k].dtype) for k, v in state.items()})
        x = crops(args.batch, base.input_px)
        x_dev = torch.from_numpy(x).to(dev)
        ref = encs[args.precisions.split(",")[0]].encode(x)
        times: dict[str, list[float]] = {p: [] for p in encs}
        for enc in encs.values():  # warm-up (cuDNN / oneDNN kernel choice)
            enc.encode(x_dev)
        for _ in range(args.rounds):
            for p, enc in encs.items():
                start = time.perf_counter()
                enc.encode(x_dev)  # returns host numpy, so the device work is finished when it returns
                times[p].append(time.perf_counter() - start)
        print(f"\n{enc_name} (dim {base.dim}, {base.input_px} px)")
        first = float(np.median(times[next(iter(encs))]))
        for p, enc in encs.items():
            t = float(np.median(times[p]))
            out = enc.encode(x)
            cos = np.sum(out * ref, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
            print(f"  {p:5s} ({enc.precision.label:13s}) {args.batch / t:9.1f} cells/s   x{first / t:5.2f} vs "
                  f"{next(iter(encs))}   cosine to it: min {cos.min():.4f} mean {cos.mean():.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
