"""Encode/decode throughput of the motion tokenizer, in frames per second.

    python benchmarks/tokenizer_throughput.py [--tokenizer outputs/demo/tokenizer] [--preset small]

Compares the ways a user can run it: a per-clip loop (batch 1), our default batched `encode`
(exact: every item encoded alone inside the call) and the single masked batched pass
(`batch_invariant=False`), at batch 1 and 64 on clips of 196 frames.
"""

import argparse
import time

import torch

from motion_tokenizer import MotionVQVAE, VQVAEConfig


def frames_per_second(fn, frames: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return frames * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tokenizer", default=None, help="trained tokenizer folder (default: a fresh preset)"
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tokenizer:
        model = MotionVQVAE.from_pretrained(args.tokenizer)
    else:
        model = MotionVQVAE(VQVAEConfig.preset(args.preset)).eval()
    rows = []
    for batch in (1, 64):
        features = torch.randn(batch, args.frames, model.config.nfeats) * model.std + model.mean
        codes = model.encode(features, batch_invariant=False)
        frames, repeats = batch * args.frames, max(2, 64 // batch)
        with torch.no_grad():
            exact = frames_per_second(lambda f=features: model.encode(f), frames, repeats)
            batched = frames_per_second(
                lambda f=features: model.encode(f, batch_invariant=False), frames, repeats
            )
            decode = frames_per_second(lambda c=codes: model.decode(c), frames, repeats)
            loop = frames_per_second(
                lambda fs=features: [model.encode(f[None]) for f in fs], frames, max(1, repeats // 4)
            )
        rows.append((batch, loop, exact, batched, decode))
    name = args.tokenizer or f"fresh '{args.preset}' preset"
    print(
        f"motion tokenizer throughput ({name}, {args.frames}-frame clips, {args.threads} threads), frames/s\n"
    )
    print("| batch | per-clip loop encode | encode (exact, default) | encode (one batched pass) | decode |")
    print("|---:|---:|---:|---:|---:|")
    for batch, loop, exact, batched, decode in rows:
        print(f"| {batch} | {loop:,.0f} | {exact:,.0f} | {batched:,.0f} | {decode:,.0f} |")


if __name__ == "__main__":
    main()
