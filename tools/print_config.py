"""Print the resolved config: ``python tools/print_config.py CONFIG [--cfg-options k=v ...]``."""

import argparse

from mmengine.config import DictAction

from visionfm.engine.cli import run_tool
from visionfm.engine.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="config file path")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override keys: key=value ..."
    )
    args = parser.parse_args()
    cfg = load_config(args.config, args.cfg_options)
    print(cfg.pretty_text)


if __name__ == "__main__":
    run_tool(main)
