"""``python -m training`` / ``torchrun -m training``: train, export, patches, eval.

Run in the root of a checkout (``training`` is not installed with the plugin). Examples::

    torchrun --nproc_per_node 8 -m training train --config vits14_reddino data.patch_dirs=[/data]
    python -m training train --config tiny_cpu run.output_dir=runs/tiny
    python -m training export runs/tiny --out exported/tiny
    python -m training patches /smears --out patches/ --size 224   (shards + manifest.json)
    python -m training patches /smears --out crops/ --size 112 --cells   (one PNG per cell)
    python -m training eval ...          (the harness, as python -m training.eval)
"""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from training.configs import load_config
    from training.train.loop import train

    cfg = load_config(args.config, args.overrides)
    last = train(cfg)
    print(f"finished at step {last}; output in {cfg.run.output_dir}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.train.export import export_teacher

    folder = export_teacher(
        args.checkpoint, args.out, img_size=args.img_size, state_dict_path=args.state_dict,
        tag=args.tag,
    )
    print(f"exported teacher backbone to {folder} (load with 'local-dir:{folder}')")
    return 0


def _patches(args: argparse.Namespace) -> int:
    from training.data.patches import extract_cell_crops, extract_patches
    from training.data.shards import write_cell_shards, write_patch_shards

    form = args.format or ("png" if args.cells else "shards")
    if form == "shards":
        if args.cells:
            manifest = write_cell_shards(args.sources, args.out, size=args.size, scale=args.scale,
                                         margin=args.margin, shard_size=args.shard_size)
        else:
            manifest = write_patch_shards(args.sources, args.out, size=args.size,
                                          min_foreground=args.min_foreground, scale=args.scale,
                                          shard_size=args.shard_size)  # fmt: skip
        print(f"wrote {manifest['count']} {manifest['kind']} in {len(manifest['shards'])} shards "
              f"to {args.out} (train with data.shards=[{args.out}])")
        return 0
    if args.cells:
        count = extract_cell_crops(args.sources, args.out, size=args.size, scale=args.scale,
                                   margin=args.margin)
        print(f"wrote {count} cell crops to {args.out}")
        return 0
    count = extract_patches(
        args.sources, args.out, size=args.size, min_foreground=args.min_foreground,
        scale=args.scale,
    )
    print(f"wrote {count} patches to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="pretrain a DINOv2/RedDino backbone")
    train.add_argument("--config", required=True,
                       help="bundled name (tiny_cpu, vits14_reddino, ...) or YAML path, merged "
                            "over training/configs/default.yaml")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides")
    train.set_defaults(func=_train)

    export = sub.add_parser("export", help="teacher backbone -> timm/napari-reddino model folder")
    export.add_argument("checkpoint", help="checkpoint file (.pt, or a dcp_to_torch file), "
                        "sharded .dcp folder, or run folder (newest checkpoint)")
    export.add_argument("--out", required=True, help="folder to write")
    export.add_argument("--img-size", type=int, default=224)
    export.add_argument("--state-dict", default=None, help="also write a plain timm state dict")
    export.add_argument("--tag", default=None)
    export.set_defaults(func=_export)

    patches = sub.add_parser("patches", help="tile smears into non-empty training patches")
    patches.add_argument("sources", nargs="+", help="image files or folders (recursive)")
    patches.add_argument("--out", required=True)
    patches.add_argument("--size", type=int, default=224)
    patches.add_argument("--min-foreground", type=float, default=0.1)
    patches.add_argument("--scale", type=float, default=1.0, help="resize smears first")
    patches.add_argument("--cells", action="store_true",
                         help="segment each smear (classical backend) and write one crop per "
                              "cell instead of tiles")
    patches.add_argument("--margin", type=float, default=2.0,
                         help="with --cells: crop side / the cell's longest box side")
    patches.add_argument("--format", choices=("shards", "png"), default=None,
                         help="shards: .npy shards + manifest.json, for data.shards (the default "
                              "for tiles); png: one PNG per patch, for data.patch_dirs (the "
                              "default with --cells)")
    patches.add_argument("--shard-size", type=int, default=1024, help="patches per shard")
    patches.set_defaults(func=_patches)

    sub.add_parser("eval", help="evaluation harness (see python -m training eval -h)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":
        from training.eval.harness import main as eval_main

        return eval_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
