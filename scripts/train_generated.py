"""
Train the generated-face checkpoint (mesofcn-generated) on a CPU from shared/data, and install it into the package:

    python scripts/train_generated.py --shared-data ../shared/data --work runs/generated-model
    python scripts/train_generated.py --shared-data ../shared/data --work runs/generated-model --ship

Nothing listed in benchmarks/validation_generated.csv (the images of six generators it never trains on and the
real photos of gan_more/real) is trained on, nor the real media of benchmarks/validation.csv and held_out.csv (so
that the default detector's validation people stay unseen by both bundled models). The recipe is judged afterwards
with `mesofcn evaluate --media benchmarks/validation_generated.csv --model mesofcn-generated`.
Steps (each resumes where a stopped run left off; rerun the same command):
1. Link the chosen images into WORK/sources/<source>/ (symbolic links, nothing copied; the path under the shared
   folder is kept in the link's name): real photos (faces/, faces_extra/, gan/ffhq/) and three GAN sources:
   stylegan3 (gan/stylegan3, gan_more/stylegan3), stylegan (StyleGAN v1 tiles, gan_more/stylegan, the
   seeprettyface StyleGAN) and pgan (gan/pgan_tiles).
2. `mesofcn prepare gan-faces --encode-crops` at c23: the face of every image cut and resized to 128 px with the
   processor's crop, then that crop H.264-encoded (one frame, CRF 23): every source, whatever its size and format,
   ends in the same resize and the same encoding. Split 0.9/0.1 per source (seeded), for the checkpoint choice.
3. `mesofcn train` (task gan-c23-all) with the flip/resolution/blur/noise/JPEG augmentation drawn alike for both
   classes, classes balanced by oversampling; see TRAIN_RECIPE. The processor saved with the checkpoint encodes
   inference crops at CRF 23 too (`crop_crf`), so a user's photo goes through the training pipeline.
4. With --ship: the checkpoint (final/, or --ship-best for best/) with its card from model_cards/ into the
   package's detection/weights/mesofcn-generated/ (or --ship-to), where `mesofcn detect` and the pipeline find it. The
   weights are derived from research-only data: they ship under a non-commercial research licence (see the card).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from train_default import HELD_OUT_MEDIA, MODEL_CARDS, REPO_ROOT, VALIDATION_MEDIA, run, train

from mesofcn.data.gan_faces import GAN_IMAGE_EXTENSIONS
from mesofcn.detection.defaults import GENERATED_MODEL_NAME, packaged_model_path
from mesofcn.training.bundled_models import install_bundled_model
from mesofcn.training.run_outputs import BEST_DIR, FINAL_DIR

#: The training recipe of the bundled checkpoint (everything but the folders).
TRAIN_RECIPE = [
    "--task", "gan-c23-all",
    "--augment",
    "--seg_loss_weight", "0.3",
    "--max_train_steps", "1000",
    "--learning_rate", "1e-3",
    "--lr_decay", "0.95",
    "--per_device_train_batch_size", "16",
    "--mixed_precision", "no",
    "--eval_steps", "100",
    "--metric_for_best_model", "auc",
    "--checkpointing_steps", "eval",
    "--logging_steps", "25",
    "--seed", "42",
]  # fmt: skip
#: Sources of the training images, relative to the shared data folder: the reals and each GAN source's folders.
TRAIN_SOURCES = {
    "real": ("faces", "faces_extra", "gan/ffhq"),
    "stylegan3": ("gan/stylegan3", "gan_more/stylegan3"),
    "stylegan": ("gan/stylegan1_tiles", "gan_more/stylegan", "gan_more/stylegan_seeprettyface"),
    "pgan": ("gan/pgan_tiles",),
}
#: The unseen-generator validation list (never trained on).
GENERATED_VALIDATION = REPO_ROOT / "benchmarks" / "validation_generated.csv"


def excluded_paths() -> set[str]:
    """Shared-data paths no training image may come from: every validation and held-out list's items."""
    excluded = set()
    for labels in (GENERATED_VALIDATION, VALIDATION_MEDIA, HELD_OUT_MEDIA):
        with labels.open(newline="") as handle:
            excluded |= {row["path"] for row in csv.DictReader(handle)}
    return excluded


def link_sources(shared: Path, folder: Path) -> dict[str, Path]:
    """WORK/sources/<source>/: a symbolic link per training image, named by its shared-data path ('/' -> '__')."""
    excluded = excluded_paths()
    linked = {}
    for source, parts in TRAIN_SOURCES.items():
        target = folder / source
        target.mkdir(parents=True, exist_ok=True)
        for part in parts:
            for image in sorted((shared / part).rglob("*")):
                relative = image.relative_to(shared).as_posix()
                if image.suffix.lower() not in GAN_IMAGE_EXTENSIONS or not image.is_file() or relative in excluded:
                    continue
                link = target / relative.replace("/", "__")
                if not link.is_symlink():
                    os.symlink(image.resolve(), link)
        linked[source] = target
        print(f"{source}: {sum(1 for _ in target.iterdir())} images linked in {target}")
    return linked


def prepare(shared: Path, work: Path, num_proc: int) -> Path:
    """The training dataset (step 2); a finished one is not rebuilt."""
    sources = link_sources(shared, work / "sources")
    folder = work / "data_c23"
    if not (folder / "dataset_dict.json").is_file():
        fakes = [f"{name}={path}" for name, path in sources.items() if name != "real"]
        run(["prepare", "gan-faces", "--real", str(sources["real"]), "--fake", *fakes, "--compression", "c23"]
            + ["--split", "0.9,0.1,0", "--encode-crops", "--out", str(folder), "--num-proc", str(num_proc)]
            + ["--quiet"])  # fmt: skip
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("runs/generated-model"), help="datasets and the run")
    parser.add_argument("--num-proc", type=int, default=2, help="dataset builder processes")
    parser.add_argument("--ship", action="store_true", help="only install the finished run's checkpoint")
    parser.add_argument("--ship-best", action="store_true", help="with --ship: install best/ instead of final/")
    parser.add_argument(
        "--ship-to", type=Path, default=packaged_model_path(GENERATED_MODEL_NAME), help="where --ship installs it"
    )
    args = parser.parse_args()
    output = args.work / "train"
    if args.ship:
        checkpoint = output / (BEST_DIR if args.ship_best else FINAL_DIR)
        card = MODEL_CARDS / f"{GENERATED_MODEL_NAME}.md"
        print(f"installed {install_bundled_model(checkpoint, card, args.ship_to)}")
        return
    if not (args.shared_data / "gan").is_dir():
        raise SystemExit(f"{args.shared_data} has no gan/: pass --shared-data with the shared data folder")
    train([prepare(args.shared_data, args.work, args.num_proc)], output, TRAIN_RECIPE)


if __name__ == "__main__":
    main()
