"""Print the resolved config: ``python tools/print_config.py CONFIG [--cfg-options k=v ...]``."""

import argparse

from mmengine.config import Config, DictAction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="config file path")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override keys: key=value ..."
    )
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    print(cfg.pretty_text)


if __name__ == "__main__":
    main()
