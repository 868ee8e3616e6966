"""
Train the default checkpoint (mesofcn-selfblend-c23-c40) on a CPU from the real faces in shared/data:

    python scripts/train_default.py --shared-data ../shared/data --work runs/default-model
    python scripts/train_default.py --shared-data ../shared/data --work runs/default-model --ship

Steps (each resumes where a stopped run left off; rerun the same command):
1. `mesofcn prepare faceforensics`: the FF++ mini videos at c23, every 2nd frame. Train split: 519 (real),
   519_515 (Deepfakes, difference masks), 750_743 (Face2Face); validation split: 004 and 004_982 (NeuralTextures),
   never trained on.
2. `mesofcn prepare self-blend`, twice (c23 and c40): every 4th frame of 519 and of every real video under
   real_videos/ and real_videos_more/, and every photo under faces/ and gan/ffhq/, with a self-blended pseudo-fake
   each; real and blended runs compressed alike as H.264 videos at the level's CRF; all in the train split.
   Both levels, so that heavy compression (and the blur it brings) is common to both classes: trained on c23
   alone, a probe called the CRF-40 real 004 more fake than its NeuralTextures fake (validation AUC 0.15).
3. `mesofcn train` on the three datasets (task sbi-any-all): the same resolution/blur/noise/JPEG/flip
   augmentation for both classes (--augment), λ 0.3, Adam 1e-3 decayed x0.6 per epoch, 6 epochs of batch 32 in
   bf16, validation on the pair every 224 steps with a resumable checkpoint each time. The model at the end of
   the schedule (final/) is the one installed: the pair's AUC stayed below 0.5 throughout (the CRF-40 real
   scores above the seamless NeuralTextures fake), so picking by it would pick the least trained model.
   (--online_self_blend is left out: its blends are made after compression, so only the fakes would carry
   uncompressed seams.)
4. With --ship: the final checkpoint's weights, config, processor config, training arguments and validation
   results, plus the model card from model_cards/, into the package's weights/mesofcn-selfblend-c23-c40/ (or
   --ship-to), where `mesofcn detect`, `mesofcn demo` and `pipeline("deepfake-detection")` find it. For research
   use in your checkout only: the training data's terms forbid shipping what is derived from it (git ignores the
   folder).

About 100 minutes on 2 CPU cores with AVX512-BF16 for step 3, 5 minutes for steps 1-2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mesofcn.cli import main as mesofcn  # noqa: E402
from mesofcn.defaults import DEFAULT_MODEL_NAME, packaged_model_path  # noqa: E402
from mesofcn.training import CHECKPOINTS_DIR, FINAL_DIR, list_checkpoints  # noqa: E402

#: The training recipe of the bundled checkpoint (everything but the folders).
TRAIN_RECIPE = [
    "--task", "sbi-any-all",
    "--augment",
    "--seg_loss_weight", "0.3",
    "--num_train_epochs", "6",
    "--learning_rate", "1e-3",
    "--lr_decay", "0.6",
    "--per_device_train_batch_size", "32",
    "--mixed_precision", "bf16",
    "--eval_steps", "224",
    "--metric_for_best_model", "auc",
    "--checkpointing_steps", "eval",
    "--logging_steps", "50",
    "--seed", "42",
]  # fmt: skip
#: Real sources of the self-blend dataset, relative to the shared data folder.
REAL_SOURCES = (
    "ffpp_mini/original_sequences/youtube/c23/videos/519.mp4",
    "real_videos",
    "real_videos_more",
    "faces",
    "gan/ffhq",
)
#: Files of the best checkpoint that ship (no code files: the installed package is the code).
SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "eval_results.json")


def run(argv: list[str]) -> None:
    print("$ mesofcn " + " ".join(argv), flush=True)
    code = mesofcn(argv)
    if code:
        raise SystemExit(f"mesofcn {argv[0]} failed with exit code {code}")


def prepare(shared: Path, work: Path, num_proc: int) -> list[Path]:
    """The FF++ mini dataset (c23) and the self-blend datasets (c23, c40); a finished one is not rebuilt."""
    ffpp = work / "ffpp_c23"
    common = ["--num-proc", str(num_proc), "--quiet"]
    if not (ffpp / "dataset_dict.json").is_file():
        run(["prepare", "faceforensics", "--root", str(shared / "ffpp_mini"), "--out", str(ffpp), "--every", "2"]
            + ["--methods", "Deepfakes", "Face2Face", "NeuralTextures", "--compression", "c23", *common])  # fmt: skip
    datasets = [ffpp]
    sources = [str(shared / source) for source in REAL_SOURCES]
    for level in ("c23", "c40"):
        blends = work / f"sbi_{level}"
        if not (blends / "dataset_dict.json").is_file():
            run(["prepare", "self-blend", "--real", *sources, "--out", str(blends), "--every", "4", "--split", "1,0,0"]
                + ["--seed", "7", "--compression", level, *common])  # fmt: skip
        datasets.append(blends)
    return datasets


def train(datasets: list[Path], output: Path) -> None:
    argv = ["train", "--dataset_dir", *map(str, datasets), "--output_dir", str(output), *TRAIN_RECIPE]
    if list_checkpoints(output / CHECKPOINTS_DIR):
        argv += ["--resume_from_checkpoint", "latest"]
    run(argv)


def ship(output: Path, target: Path) -> Path:
    """Copy the run's final checkpoint and the card to `target` (written beside it, then renamed into place)."""
    best = output / FINAL_DIR
    card = REPO_ROOT / "model_cards" / f"{DEFAULT_MODEL_NAME}.md"
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in SHIPPED_FILES:
        shutil.copy2(best / name, partial / name)
    for name in ("config.json", "preprocessor_config.json"):  # the code is the installed package, not files here
        settings = json.loads((partial / name).read_text())
        settings.pop("auto_map", None)
        (partial / name).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    arguments = json.loads((best / "training_args.json").read_text())
    arguments["dataset_dir"] = [Path(folder).name for folder in arguments["dataset_dir"]]
    arguments["output_dir"] = Path(arguments["output_dir"]).name
    (partial / "training_args.json").write_text(json.dumps(arguments, indent=2) + "\n")
    shutil.copy2(card, partial / "README.md")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("runs/default-model"), help="datasets and the run")
    parser.add_argument("--num-proc", type=int, default=2, help="dataset builder processes")
    parser.add_argument(
        "--ship", action="store_true", help="only install the finished run's final checkpoint as the default model"
    )
    parser.add_argument("--ship-to", type=Path, default=packaged_model_path(), help="where --ship installs it")
    args = parser.parse_args()
    output = args.work / "train"
    if args.ship:
        print(f"installed {ship(output, args.ship_to)}")
        return
    if not (args.shared_data / "ffpp_mini").is_dir():
        raise SystemExit(f"{args.shared_data} has no ffpp_mini/: pass --shared-data with the shared data folder")
    train(prepare(args.shared_data, args.work, args.num_proc), output)


if __name__ == "__main__":
    main()
