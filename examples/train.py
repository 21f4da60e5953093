"""A toy training script for trying pbtrun: CPU only, a few seconds, resumable.

It takes launcher-style arguments (--seed=1 --lr=0.01 --experiment=NAME --train_dir=DIR),
prints its progress, reports the GPU it was given (CUDA_VISIBLE_DEVICES), and writes a
checkpoint into its experiment directory after every step, continuing from it when restarted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step_time", type=float, default=0.1, help="seconds per step")
    parser.add_argument("--fail_at", type=int, default=-1, help="exit 1 at this step (for demos)")
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--train_dir", default="train_dir")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    ckpt_dir = Path(args.train_dir) / args.experiment
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / "checkpoint.json"
    state = json.loads(ckpt.read_text()) if ckpt.exists() else {"step": 0, "loss": 10.0}
    rng = random.Random(args.seed * 1000 + state["step"])
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "(not set)")
    print(f"{args.experiment}: seed={args.seed} lr={args.lr} CUDA_VISIBLE_DEVICES={gpu} from step {state['step']}")
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    while state["step"] < args.steps:
        if stop:
            print(f"interrupted at step {state['step']}; checkpoint saved")
            return 130
        if state["step"] == args.fail_at:
            print(f"simulated failure at step {state['step']}", file=sys.stderr)
            return 1
        time.sleep(args.step_time)
        state["step"] += 1
        state["loss"] *= math.exp(-args.lr * (1 + rng.random()))
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, ckpt)
        print(f"step {state['step']}/{args.steps} loss {state['loss']:.4f}", flush=True)
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
