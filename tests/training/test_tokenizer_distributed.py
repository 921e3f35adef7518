"""A real 2-process run (torchrun, gloo, CPU): ranks see different data, yet end with one codebook.

The test runs this very file under `torchrun --nproc_per_node 2`; each worker trains a tiny
MotionVQVAE for a few steps on its own data (no DDP: the encoders drift apart, only the quantizer's
all-reduce and seeded pick keep the codebooks equal) and saves its codebook for the parent to compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from motion_tokenizer import MotionVQVAE, VQVAEConfig

STEPS = 4


def train(rank: int) -> tuple[MotionVQVAE, int]:
    """A few training steps on rank-specific data; returns the model and how many codes were reset."""
    torch.set_num_threads(1)
    torch.manual_seed(0)  # identical initial weights on every rank
    # a high dead-code threshold so that codes are reset at every step
    model = MotionVQVAE(VQVAEConfig.preset("tiny", dead_code_threshold=2.0)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(100 + rank)  # different data per rank
    resets = 0
    for _ in range(STEPS):
        x = torch.cumsum(0.1 * torch.randn(2, 32, 263, generator=data), dim=1) + rank  # (2, 32, 263)
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        resets += model.quantizer.last_num_reset
    return model, resets


def worker(out_dir: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, resets = train(rank)
    q = model.quantizer
    state = {k: q.state_dict()[k].float() for k in ("codebook", "cluster_size", "embed_sum")}
    state["encoder_in"] = model.encoder.conv_in.weight.detach()
    save_file(state, out_dir / f"rank{rank}.safetensors")
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"world": world, "resets": resets}))
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_end_with_identical_codebooks(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, __file__, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in info] == [2, 2]
    assert all(i["resets"] > 0 for i in info)
    r0, r1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert not torch.equal(r0["encoder_in"], r1["encoder_in"])  # the ranks really trained on different data
    for key in ("codebook", "cluster_size", "embed_sum"):
        assert torch.equal(r0[key], r1[key]), key
    # and the shared codebook is not what rank 0 alone would have learnt
    alone, _ = train(0)
    assert not torch.allclose(alone.quantizer.codebook, r0["codebook"])


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
