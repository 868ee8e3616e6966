"""``mesofcn prepare``: build the preprocessed face datasets (FaceForensics++, GAN faces, self-blends), merge shards.

:func:`add_prepare_parser` adds the subcommand to the ``mesofcn`` parser; each handler returns an exit code and
raises :class:`mesofcn.cli.common.CommandError` for one-line problems (a missing root, an unfinished shard ...).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.media_lists import MediaListError, media_list_paths
from ..data.settings import DEFAULT_METHODS, FFPP_METHODS, MIN_FACE_SCORE, BuildOptions, parse_shard
from ..detection.compression import COMPRESSION_LEVELS, normalize_compression
from ..detection.image_processing_mesofcn import DEFAULT_CROP_SCALE, DEFAULT_CROP_SIZE
from ..detection.media_files import MediaError
from .arguments import jpeg_quality, positive_int, probability

if TYPE_CHECKING:
    from ..data.execution import BuildReport

# The builders (mesofcn.data and its builder modules) import `datasets` and pyarrow: the handlers import them
# when they run, so that building the `mesofcn` parser (every command's start-up) does not.

__all__ = [
    "add_prepare_parser",
    "build_options",
    "run_prepare_faceforensics",
    "run_prepare_gan_faces",
    "run_prepare_media",
    "run_prepare_merge",
    "run_prepare_pack",
    "run_prepare_self_blend",
]


def add_prepare_parser(commands) -> None:
    """Add ``prepare {faceforensics,gan-faces,self-blend,media,merge,pack}`` to an argparse subparsers object."""
    prepare = commands.add_parser(
        "prepare",
        help="build preprocessed face datasets (FaceForensics++, GAN faces, self-blends)",
        description="Turn FaceForensics++ videos or real/GAN face images into a Hugging Face DatasetDict of "
        f"{DEFAULT_CROP_SIZE}x{DEFAULT_CROP_SIZE} face crops with manipulation masks (datasets.load_from_disk reads "
        "it). Builds resume where they stopped; --shard splits one across machines and 'prepare merge' joins the "
        "shards.",
    )
    kinds = prepare.add_subparsers(dest="dataset", required=True)
    _add_faceforensics(kinds)
    _add_gan_faces(kinds)
    _add_self_blend(kinds)
    _add_media(kinds)
    merge = kinds.add_parser("merge", help="join finished --shard outputs into one dataset")
    merge.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR", help="the --out folders of the shards")
    merge.add_argument("--out", required=True, type=Path, help="folder for the merged dataset")
    merge.add_argument("--quiet", action="store_true", help="no progress bars")
    merge.set_defaults(handler=run_prepare_merge)
    _add_pack(kinds)


def _add_pack(kinds) -> None:
    parser = kinds.add_parser(
        "pack",
        help="face-crop datasets -> one packed folder of uint8 arrays (or JPEGs) that training reads without "
        "decoding PNGs",
        description="Decode the crops of one or more face-crop DatasetDicts once into memory-mapped uint8 NumPy "
        "arrays (crops; binary masks bit-packed, rows without a mask marked; metadata columns as .npy/JSON) with a "
        "JSON index of counts, sources, crop scale and SHA-256 checksums. The folders are joined split by split as "
        "training joins them, so 'mesofcn train --dataset_dir OUT' trains on the same rows, in the same order, as "
        "'--dataset_dir DATASET_DIR ...', and gets bit-identical batches. With --jpeg-quality the crops are stored as "
        "JPEGs instead (lossy; masks and metadata stay exact). Nothing is pickled.",
    )
    parser.add_argument(
        "datasets", nargs="+", type=Path, metavar="DATASET_DIR", help="DatasetDicts written by mesofcn prepare"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the packed data (a rerun rewrites it)")
    parser.add_argument(
        "--compress",
        action="store_true",
        help="also write OUT/mesofcn_pack.zip, a deflate-compressed copy for uploading (unpack it with "
        "'python -m zipfile -e OUT/mesofcn_pack.zip DIR' and train on DIR)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=jpeg_quality,
        metavar="Q",
        help="store the crops as OpenCV JPEGs of quality Q (1-100) in one file per split instead of exact uint8 "
        "arrays: LOSSY (training then sees slightly different pixels; the index and mesofcn_build.json record it), "
        "about a tenth of the size, for a copy that has to travel (90 or 85 are reasonable). Masks and metadata stay "
        "exact; train and evaluate decode the crops themselves. Default: exact crops",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_prepare_pack)


def _add_faceforensics(kinds) -> None:
    parser = kinds.add_parser(
        "faceforensics",
        help="FaceForensics++ videos -> face crops + masks, official splits",
        description="Read an FF++ download (original_sequences/, manipulated_sequences/), keep one frame in every "
        "--every, crop the most confident face of each with the processor's crop, add FF++'s masks (or "
        "difference masks against the originals), and split by FF++'s official lists.",
    )
    parser.add_argument("--root", required=True, type=Path, help="the FF++ download folder")
    parser.add_argument(
        "--compression",
        nargs="+",
        default=["c23"],
        type=_compression,
        metavar="LEVEL",
        help=f"levels to build: {', '.join(COMPRESSION_LEVELS)} (c0 = raw); default c23",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        choices=FFPP_METHODS,
        metavar="METHOD",
        help=f"manipulation methods: {', '.join(FFPP_METHODS)}; default: the paper's {', '.join(DEFAULT_METHODS)}",
    )
    parser.add_argument("--every", type=positive_int, default=5, help="keep one frame in every K (paper: 5)")
    _add_common(parser)
    parser.set_defaults(handler=run_prepare_faceforensics)


def _add_gan_faces(kinds) -> None:
    parser = kinds.add_parser(
        "gan-faces",
        help="real vs GAN face images -> face crops, seeded split per source",
        description="Compress every image as a one-frame H.264 video at the level's CRF (like an FF++ frame), "
        "crop its most confident face, and split each source deterministically.",
    )
    parser.add_argument("--real", required=True, type=Path, help="folder of real face images (read recursively)")
    parser.add_argument(
        "--fake",
        required=True,
        nargs="+",
        type=_named_folder,
        metavar="NAME=DIR",
        help="generated face images of one source (its method name), e.g. stylegan=ffhq_stylegan/",
    )
    parser.add_argument(
        "--compression", nargs="+", default=["c23"], type=_compression, metavar="LEVEL", help="default c23"
    )
    parser.add_argument(
        "--split", type=_fractions, default=(0.8, 0.1, 0.1), help="train,validation,test fractions per source"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument(
        "--encode-crops",
        action="store_true",
        help=f"cut and resize the face first, then H.264-encode the {DEFAULT_CROP_SIZE}-px crop (not the full image): "
        "every source ends in the same resize and encoding at one scale, whatever its size and format (mixed photo "
        "sources)",
    )
    _add_common(parser)
    parser.set_defaults(handler=run_prepare_gan_faces)


def _add_self_blend(kinds) -> None:
    parser = kinds.add_parser(
        "self-blend",
        help="real videos/images -> face crops + self-blended pseudo-fakes with exact masks, split per source",
        description="Blend the most confident face of every sampled frame with a transformed copy of itself, "
        "compress the real and the blended frames alike (each run as one H.264 video at the level's CRF), crop "
        "both with the same face box, and split by source (identity subfolders of images kept together).",
    )
    parser.add_argument(
        "--real",
        required=True,
        nargs="+",
        type=Path,
        metavar="PATH",
        help="real video or image files, or folders searched recursively for them",
    )
    parser.add_argument(
        "--compression", nargs="+", default=["c23"], type=_compression, metavar="LEVEL", help="default c23"
    )
    parser.add_argument("--every", type=positive_int, default=5, help="keep one video frame in every K")
    parser.add_argument(
        "--split", type=_fractions, default=(0.8, 0.1, 0.1), help="train,validation,test fractions of the sources"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of the blends")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="at most N sampled frames per video")
    parser.add_argument(
        "--donors",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="images, or folders of them, whose faces donor blends paste (another person's face, Face X-ray style)",
    )
    parser.add_argument(
        "--donor-probability", type=probability, default=0.0, help="share of pseudo-fakes that are donor blends"
    )
    parser.add_argument(
        "--downsample-probability",
        type=probability,
        default=0.0,
        help="share of pseudo-fakes whose pasted face is a 0.3-0.75x lower-resolution copy (as swappers paste)",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        type=Path,
        default=[],
        metavar="LABELS.csv",
        help="labelled media lists (path column, relative to --exclude-root or to the list) whose files are never "
        "used, e.g. a validation set",
    )
    parser.add_argument("--exclude-root", type=Path, default=None, help="folder the --exclude paths are relative to")
    _add_common(parser)
    parser.set_defaults(handler=run_prepare_self_blend)


def _add_media(kinds) -> None:
    parser = kinds.add_parser(
        "media",
        help="a labelled list of real and fake videos/images (path,label[,group] CSV) -> face crops, one split",
        description="Sample every --every-th frame of each listed video (or the image), compress the run of frames "
        "as one H.264 video at the level's CRF whatever its label, and crop the most confident face of each frame. "
        "Fakes have no mask (their segmentation loss is ignored); every row goes into --split-name.",
    )
    parser.add_argument("--labels", required=True, type=Path, help="CSV with path,label (real/fake) and group columns")
    parser.add_argument(
        "--root", type=Path, default=None, help="folder the listed paths are relative to (default: the CSV's)"
    )
    parser.add_argument(
        "--compression", nargs="+", default=["c23"], type=_compression, metavar="LEVEL", help="default c23"
    )
    parser.add_argument("--every", type=positive_int, default=5, help="keep one video frame in every K")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="at most N sampled frames per video")
    parser.add_argument(
        "--split-name", default="train", choices=("train", "validation", "test"), help="the split of every row"
    )
    _add_common(parser)
    parser.set_defaults(handler=run_prepare_media)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (a rerun resumes it)")
    parser.add_argument("--num-proc", type=positive_int, default=1, help="worker processes")
    parser.add_argument("--shard", type=_shard, metavar="I/N", help="build only shard I of N (merge them later)")
    parser.add_argument("--min-score", type=float, default=MIN_FACE_SCORE, help="lowest face detector score")
    parser.add_argument(
        "--crop-scale", type=float, default=DEFAULT_CROP_SCALE, help="crop side / max(box side), as the processor"
    )
    parser.add_argument("--remove-work", action="store_true", help="delete OUT/.work once the dataset is written")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _compression(text: str) -> str:
    try:
        return normalize_compression(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _named_folder(text: str) -> tuple[str, Path]:
    name, separator, folder = text.partition("=")
    if not separator or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(folder)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated fractions, got {text!r}") from None


def _command(args: argparse.Namespace, parts: list[str]) -> str:
    """The full command line of this build, every setting spelled out (recorded in the dataset card)."""
    common = ["--out", str(args.out), "--num-proc", str(args.num_proc)]
    common += ["--min-score", str(args.min_score), "--crop-scale", str(args.crop_scale)]
    if args.shard:
        common += ["--shard", f"{args.shard[0]}/{args.shard[1]}"]
    return shlex.join(["mesofcn", "prepare", *parts, *common])


def build_options(args: argparse.Namespace, command: str) -> BuildOptions:
    """The options every builder takes, from the flags all `prepare` builds share; CommandError for a bad value."""
    from .common import CommandError

    try:
        return BuildOptions(
            compressions=tuple(args.compression),
            num_proc=args.num_proc,
            shard=args.shard,
            min_score=args.min_score,
            crop_scale=args.crop_scale,
            progress=not args.quiet,
            command=command,
            remove_work=args.remove_work,
        )
    except ValueError as error:
        raise CommandError(str(error)) from error


def run_prepare_faceforensics(args: argparse.Namespace) -> int:
    from ..data.faceforensics import build_faceforensics

    command = _command(
        args,
        ["faceforensics", "--root", str(args.root), "--compression", *args.compression, "--methods", *args.methods]
        + ["--every", str(args.every)],
    )
    options = build_options(args, command)
    return _run(
        lambda: build_faceforensics(args.root, args.out, methods=args.methods, every=args.every, options=options), args
    )


def run_prepare_gan_faces(args: argparse.Namespace) -> int:
    from ..data.gan_faces import build_gan_faces

    fakes = [f"{name}={folder}" for name, folder in args.fake]
    parts = ["gan-faces", "--real", str(args.real), "--fake", *fakes, "--compression", *args.compression]
    parts += ["--split", ",".join(f"{value:g}" for value in args.split), "--seed", str(args.seed)]
    if args.encode_crops:
        parts.append("--encode-crops")
    options = build_options(args, _command(args, parts))
    return _run(
        lambda: build_gan_faces(
            args.real,
            args.fake,
            args.out,
            split=args.split,
            seed=args.seed,
            encode_crops=args.encode_crops,
            options=options,
        ),
        args,
    )


def run_prepare_self_blend(args: argparse.Namespace) -> int:
    from ..data.self_blend import build_self_blend

    parts = ["self-blend", "--real", *map(str, args.real), "--compression", *args.compression]
    parts += ["--every", str(args.every), "--split", ",".join(f"{value:g}" for value in args.split)]
    parts += ["--seed", str(args.seed)]
    if args.max_frames:
        parts += ["--max-frames", str(args.max_frames)]
    if args.donors:
        parts += ["--donors", *map(str, args.donors)]
    parts += ["--donor-probability", f"{args.donor_probability:g}"]
    parts += ["--downsample-probability", f"{args.downsample_probability:g}"]
    if args.exclude:
        parts += ["--exclude", *map(str, args.exclude)]
        parts += ["--exclude-root", str(args.exclude_root)] if args.exclude_root else []
    options = build_options(args, _command(args, parts))
    return _run(
        lambda: build_self_blend(
            args.real,
            args.out,
            every=args.every,
            split=args.split,
            seed=args.seed,
            max_frames=args.max_frames,
            exclude=[path for labels in args.exclude for path in media_list_paths(labels, args.exclude_root)],
            donors=args.donors,
            donor_probability=args.donor_probability,
            downsample_probability=args.downsample_probability,
            options=options,
        ),
        args,
    )


def run_prepare_media(args: argparse.Namespace) -> int:
    from ..data.labelled_media import build_media

    parts = ["media", "--labels", str(args.labels), *(["--root", str(args.root)] if args.root else [])]
    parts += ["--compression", *args.compression, "--every", str(args.every), "--split-name", args.split_name]
    parts += ["--max-frames", str(args.max_frames)] if args.max_frames else []
    options = build_options(args, _command(args, parts))
    return _run(
        lambda: build_media(
            args.labels,
            args.out,
            root=args.root,
            every=args.every,
            max_frames=args.max_frames,
            split=args.split_name,
            options=options,
        ),
        args,
    )


def run_prepare_merge(args: argparse.Namespace) -> int:
    from ..data.assembly import merge_prepared

    command = shlex.join(["mesofcn", "prepare", "merge", *map(str, args.shards), "--out", str(args.out)])
    return _run(lambda: merge_prepared(args.shards, args.out, command=command, progress=not args.quiet), args)


def run_prepare_pack(args: argparse.Namespace) -> int:
    from ..data.work import PrepareError
    from ..training.pack import pack_datasets
    from .common import CommandError

    try:
        report = pack_datasets(
            args.datasets,
            args.out,
            compress=args.compress,
            progress=not args.quiet,
            jpeg_quality=args.jpeg_quality,
        )
    except PrepareError as error:
        raise CommandError(str(error)) from error
    print(report.summary_line())
    return 0


def _run(build, args: argparse.Namespace) -> int:
    """Run a build; input problems become one-line CommandErrors; print what was done and where it is."""
    from ..data.work import PrepareError
    from .common import CommandError

    try:
        report: BuildReport = build()
    except (PrepareError, MediaError, MediaListError) as error:
        raise CommandError(str(error)) from error
    print(report.throughput_line())
    if report.dataset is None:
        print(
            f"shard {args.shard[0]}/{args.shard[1]} done in {args.out}; when every shard is done: "
            f"mesofcn prepare merge --out FINAL_DIR SHARD_DIR..."
        )
    else:
        counts = ", ".join(f"{split} {rows}" for split, rows in report.split_rows.items())
        print(f"dataset written to {report.dataset} ({counts} rows); card: {report.dataset / 'README.md'}")
    return 0
