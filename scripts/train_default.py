"""
Train the default checkpoint (mesofcn-blends-c23-c40) on a CPU from shared/data, and install it into the package:

    python scripts/train_default.py --shared-data ../shared/data --work runs/default-model
    python scripts/train_default.py --shared-data ../shared/data --work runs/default-model --ship

Nothing listed in benchmarks/validation.csv (the fakes of 7 held-out tools and the real media of people who appear
nowhere in training) or in benchmarks/held_out.csv is ever trained on: the builders get both as --exclude, and
the recipe is judged afterwards with `mesofcn evaluate --media benchmarks/validation.csv`.
Steps (each resumes where a stopped run left off; rerun the same command):
1. `mesofcn prepare faceforensics`: the FF++ mini videos at c23, every 4th frame (train: 519, 519_515
   Deepfakes with difference masks, 750_743 Face2Face; FF++'s validation split: 004, 004_982 NeuralTextures).
2. `mesofcn prepare self-blend` at c23 and c40: every 6th frame (at most 24 per video) of every real video and
   every real photo in shared/data outside the validation list, each with a pseudo-fake made from the same full
   frame: half self-blends (the face blended with a transformed copy of itself), half donor blends (another
   person's face from the real photos, aligned by the five landmarks and colour-matched, pasted through the same
   deformed, feathered mask: Face X-ray's identity seam), and half of all pasted faces a 0.3-0.75x lower-resolution
   copy (swappers paste a small generated face). Real and pseudo-fake runs are compressed alike as H.264 videos.
3. `mesofcn prepare media` at c23 and c40 on benchmarks/train_media.csv: the fakes of the training tools (FF++
   aside: insightface inswapper, HiFiFace, FaceShifter, InfoSwap, DiffFace, MegaFS, ReliableSwap, BlendSwap,
   AEI-Net, Wav2Lip) and their real inputs, every 5th frame (at most 24 per video), compressed alike.
4. `mesofcn prepare media` at c23 on benchmarks/validation.csv as the validation split (every 10th frame, at most
   12 per video), to pick the checkpoint by frame AUC on unseen tools; never trained on.
5. `mesofcn train` on the four datasets (task sbi-any-all), crop_scale 1.3 (saved in the processor config): the
   same flip/resolution/blur/noise/JPEG augmentation for both classes, λ 0.3, Adam 1e-3 decayed x0.7 per epoch,
   900 steps of batch 16 in fp32 (bf16 is emulated, about 10x slower, on CPUs without AVX512-BF16), validation
   every 225 steps with a resumable checkpoint each time. 82 minutes on 2 AVX2 cores (2026-12-01).
6. With --ship: the checkpoint (best/ by validation AUC, or --ship-final for final/), its config, processor
   config, training arguments and validation results, with the model card from model_cards/, into the package's
   detection/weights/mesofcn-blends-c23-c40/ (or --ship-to), where `mesofcn detect`, `mesofcn demo`, `mesofcn evaluate
   --media` and `pipeline("deepfake-detection")` find it. The weights are derived from research-only data: they
   ship under a non-commercial research licence (see the card).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mesofcn.cli import main as mesofcn
from mesofcn.detection.defaults import DEFAULT_MODEL_NAME, packaged_model_path
from mesofcn.training.bundled_models import install_bundled_model
from mesofcn.training.checkpoints import list_checkpoints
from mesofcn.training.run_outputs import BEST_DIR, CHECKPOINTS_DIR, FINAL_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The training recipe of the bundled checkpoint (everything but the folders).
TRAIN_RECIPE = [
    "--task", "sbi-any-all",
    "--augment",
    "--seg_loss_weight", "0.3",
    "--max_train_steps", "900",
    "--learning_rate", "1e-3",
    "--lr_decay", "0.7",
    "--per_device_train_batch_size", "16",
    "--mixed_precision", "no",
    "--eval_steps", "225",
    "--metric_for_best_model", "auc",
    "--checkpointing_steps", "eval",
    "--logging_steps", "25",
    "--seed", "42",
]  # fmt: skip
#: The crop of every dataset (and so of the checkpoint's processor): jaw and forehead seams inside the label grid.
CROP_SCALE = "1.3"
#: Real sources of the blend datasets (videos and photos), relative to the shared data folder.
REAL_SOURCES = (
    "ffpp_mini/original_sequences/youtube/c23/videos/519.mp4",
    "real_videos",
    "real_videos_more",
    "real_videos_extra",
    "faces",
    "faces_extra",
    "gan/ffhq",
    "gan_more/real",
)
#: Photos whose faces donor blends paste (relative to the shared data folder).
DONOR_SOURCES = ("faces", "faces_extra", "gan/ffhq", "gan_more/real")
#: The labelled lists (in benchmarks/): training fakes of other tools with their reals, and the validation set.
TRAIN_MEDIA = REPO_ROOT / "benchmarks" / "train_media.csv"
VALIDATION_MEDIA = REPO_ROOT / "benchmarks" / "validation.csv"
#: Chosen items whose person also appears in training files: neither trained nor validated on.
HELD_OUT_MEDIA = REPO_ROOT / "benchmarks" / "held_out.csv"
#: The model cards of the bundled checkpoints (model_cards/<name>.md), shipped beside their weights.
MODEL_CARDS = REPO_ROOT / "model_cards"


def run(argv: list[str]) -> None:
    print("$ mesofcn " + " ".join(argv), flush=True)
    code = mesofcn(argv)
    if code:
        raise SystemExit(f"mesofcn {argv[0]} failed with exit code {code}")


def prepare(shared: Path, work: Path, num_proc: int) -> list[Path]:
    """The four datasets of the recipe (see the module docstring); a finished one is not rebuilt."""
    common = ["--num-proc", str(num_proc), "--crop-scale", CROP_SCALE, "--quiet"]
    built = []

    def build(name: str, argv: list[str]) -> None:
        folder = work / name
        if not (folder / "dataset_dict.json").is_file():
            run(["prepare", *argv, "--out", str(folder), *common])
        built.append(folder)

    build("ffpp_c23", ["faceforensics", "--root", str(shared / "ffpp_mini"), "--every", "4", "--compression", "c23"]
          + ["--methods", "Deepfakes", "Face2Face", "NeuralTextures"])  # fmt: skip
    build("blends", ["self-blend", "--real", *(str(shared / source) for source in REAL_SOURCES)]
          + ["--donors", *(str(shared / source) for source in DONOR_SOURCES), "--donor-probability", "0.5"]
          + ["--downsample-probability", "0.5", "--every", "6", "--max-frames", "24", "--split", "1,0,0"]
          + ["--seed", "7", "--compression", "c23", "c40"]
          + ["--exclude", str(VALIDATION_MEDIA), str(HELD_OUT_MEDIA), "--exclude-root", str(shared)])  # fmt: skip
    build("tools", ["media", "--labels", str(TRAIN_MEDIA), "--root", str(shared), "--every", "5"]
          + ["--max-frames", "24", "--compression", "c23", "c40"])  # fmt: skip
    build("validation", ["media", "--labels", str(VALIDATION_MEDIA), "--root", str(shared), "--every", "10"]
          + ["--max-frames", "12", "--compression", "c23", "--split-name", "validation"])  # fmt: skip
    return built


def train(datasets: list[Path], output: Path, recipe: list[str] = TRAIN_RECIPE) -> None:
    """`mesofcn train` with `recipe` on `datasets` into `output`, resuming from its latest checkpoint if any."""
    argv = ["train", "--dataset_dir", *map(str, datasets), "--output_dir", str(output), *recipe]
    if list_checkpoints(output / CHECKPOINTS_DIR):
        argv += ["--resume_from_checkpoint", "latest"]
    run(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("runs/default-model"), help="datasets and the run")
    parser.add_argument("--num-proc", type=int, default=2, help="dataset builder processes")
    parser.add_argument(
        "--ship", action="store_true", help="only install the finished run's checkpoint as the default model"
    )
    parser.add_argument("--ship-final", action="store_true", help="with --ship: install final/ instead of best/")
    parser.add_argument("--ship-to", type=Path, default=packaged_model_path(), help="where --ship installs it")
    args = parser.parse_args()
    output = args.work / "train"
    if args.ship:
        checkpoint = output / (FINAL_DIR if args.ship_final else BEST_DIR)
        card = MODEL_CARDS / f"{DEFAULT_MODEL_NAME}.md"
        print(f"installed {install_bundled_model(checkpoint, card, args.ship_to)}")
        return
    if not (args.shared_data / "ffpp_mini").is_dir():
        raise SystemExit(f"{args.shared_data} has no ffpp_mini/: pass --shared-data with the shared data folder")
    train(prepare(args.shared_data, args.work, args.num_proc), output)


if __name__ == "__main__":
    main()
