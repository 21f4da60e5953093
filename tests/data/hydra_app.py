"""A tiny Hydra app for the end-to-end test of ``args = "hydra"``: it writes what reached it
(its config, its job name, its run dir) to ``result.json`` in its Hydra output directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig


@dataclass
class Config:
    lr: float = 0.1
    seed: int = 0


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(cfg: Config) -> None:
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    result = {"lr": cfg.lr, "seed": cfg.seed, "job": hydra_cfg.job.name, "dir": str(out), "cwd": os.getcwd()}
    (out / "result.json").write_text(json.dumps(result))
    print(f"lr={cfg.lr} seed={cfg.seed}")


if __name__ == "__main__":
    main()
