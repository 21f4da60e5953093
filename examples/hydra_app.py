"""A small Hydra app, swept by pbtrun in examples/hydra.toml:

    pip install hydra-core
    pbtrun up examples/hydra.toml

Every run gets its own directory, train_dir/hydra_demo/<experiment name>/, holding its .hydra/
and the result.json this app writes there.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig


@dataclass
class Config:
    lr: float = 0.1
    seed: int = 0
    steps: int = 20


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(cfg: Config) -> None:
    rng = random.Random(cfg.seed)
    loss = 10.0
    for step in range(1, cfg.steps + 1):
        loss *= 1 - cfg.lr * rng.uniform(0.5, 1.0)
        print(f"step {step}/{cfg.steps} loss {loss:.4f}", flush=True)
        time.sleep(0.05)
    out = Path(HydraConfig.get().runtime.output_dir)  # hydra.run.dir: this run's own directory
    (out / "result.json").write_text(json.dumps({"lr": cfg.lr, "seed": cfg.seed, "loss": loss}))


if __name__ == "__main__":
    main()
