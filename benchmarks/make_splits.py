"""
Write benchmarks/validation.csv, benchmarks/held_out.csv, benchmarks/train_media.csv and
benchmarks/validation_generated.csv from ../shared/data/MANIFEST.csv.

The split is by tool and by person, never by frame (see model_cards/mesofcn-blends-c23-c40.md):
- validation fakes: every file of the tools below, which the default is never trained on;
- validation reals: the real inputs of those fakes, and other people chosen here (all clips of MEAD M003, for
  example, since one of its clips is a HyperLips input). A real file from the same source repository as one
  held-out tool's fakes is in that tool's group, so that `evaluate --media` also compares the tool's fakes with
  their own reals (`auc_within`), where a cue of the source (face size, camera, compression) cannot help;
- held_out.csv: chosen items whose person also appears in files that train (the MANIFEST's identity labels, and
  the HyperLips Obama interview, which is unlabelled): they are neither trained on nor validated on, so that
  validation holds only people who appear nowhere in training;
- train_media.csv: the labelled fakes of the other tools and their real counterparts (the real videos and photos
  that only feed the blends are listed by folder in scripts/train_default.py, which excludes validation.csv and
  held_out.csv).

validation_generated.csv judges the generated-face checkpoint (model_cards/mesofcn-generated.md) by generator:
- fakes: every image of the generators it never trains on (GENERATED_VALIDATION below: StyleGAN2, EG3D and NVAE,
  and the diffusion models SD 2.1, SD 1.5 and DDPM);
- reals: every photo of gan_more/real (Unsplash, CelebA-HQ and FFHQ people who appear nowhere in its training).
  The Unsplash reals come from the same Kaggle dataset as the StyleGAN2 fakes (both 300x300 JPEG), so they join
  StyleGAN2's group: `auc_within` there compares two pipeline-matched sources.

Run from the repository root: python benchmarks/make_splits.py [--shared-data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

#: Held-out tools: MANIFEST method prefix -> group name in validation.csv.
VALIDATION_TOOLS = {
    "DFDC": "swap:DFDC",
    "E4S": "swap:E4S",
    "motion-cosegmentation": "swap:part-swap",
    "CanonSwap": "swap:CanonSwap",
    "OpenCV+dlib": "swap:OpenCV",
    "HyperLips": "reenact:HyperLips",
    "first-order-model": "reenact:FOMM",
}
#: Real media of people held out of training (path patterns), with their group.
VALIDATION_REAL_PATTERNS = [
    (r"^real_videos_extra/Pixel-Talk\+CanonSwap/", "real:video"),
    (r"^real_videos_extra/ColorYourDream\+FaceSwap/", "real:video"),
    (r"^real_videos_extra/semchan\+HyperLips/", "real:video"),
    (r"^real_videos_extra/YuvalNirkin\+fsgan/", "real:video"),
    (r"^real_videos_extra/iperov\+DeepFaceLive/", "real:video"),
    (r"^real_videos_extra/Hangz-nju-cuhk\+Talking-Face_PC-AVS/", "real:video"),
    (r"^real_videos_more/filby89\+spectre/samples/MEAD/M003_", "real:video"),
    (r"^faces_extra/aaronchong888\+DeepFake-Detect/", "real:photo"),
    (r"^faces_extra/e4s2022\+e4s/", "real:photo"),
    (r"^faces_extra/ipraveenkmr\+Python-Face-Swap/", "real:photo"),
    (r"^faces_extra/ColorYourDream\+FaceSwap/", "real:photo"),
    (r"^faces_extra/0xapurv\+Deep-Fake/", "real:photo"),
    (r"^faces/face_recognition/.*obama", "real:photo"),
]
#: Every third DeepFaceLive sample photo (one CelebA person each) is a validation real; the rest train.
DEEPFACELIVE_PHOTOS = r"^faces_extra/iperov\+DeepFaceLive/"
#: Fakes that train: tool prefix -> group.
TRAIN_TOOLS = {
    "insightface": "swap:inswapper",
    "HiFiFace": "swap:HiFiFace",
    "HifiFace": "swap:HiFiFace",
    "FaceShifter": "swap:FaceShifter",
    "InfoSwap": "swap:InfoSwap",
    "DiffFace": "swap:DiffFace",
    "MegaFS": "swap:MegaFS",
    "ReliableSwap": "swap:ReliableSwap",
    "BlendSwap": "swap:BlendSwap",
    "AEI-Net": "swap:AEI-Net",
    "blended pseudo-swap": "swap:blend",
    "Wav2Lip": "reenact:Wav2Lip",
}
#: Real counterparts of the training fakes (their targets and inputs), listed in train_media.csv.
TRAIN_REAL_PATTERNS = [
    r"^faces_extra/(xuehy|mapooon|ygtxr1997|hxngiee|Himalaypatel75|zkj3e|bchachar)",
    r"^real_videos_extra/(Akash-Jariwala|haroon001|davicoscarelli|wujinzhong|HuyVux-dev)",
]
#: Identities of files that train (e.g. Obama in face_recognition's test images and in MakeItTalk): chosen items
#: showing them go to held_out.csv. The HyperLips video2 pair is an Obama interview without an identity label.
TRAINED_IDENTITIES = ("obama", "biden")
UNLABELLED_TRAINED = ("semchan+HyperLips/test/video2/", "semchan+HyperLips/result/result_video2.mp4")
#: Generators the generated-face checkpoint never trains on: MANIFEST method prefix -> group.
GENERATED_VALIDATION = {
    "StyleGAN2": "gan:StyleGAN2",
    "EG3D": "gan:EG3D",
    "NVAE": "vae:NVAE",
    "Stable Diffusion 2.1": "diffusion:SD2.1",
    "Stable Diffusion 1.5": "diffusion:SD1.5",
    "DDPM": "diffusion:DDPM",
}
#: Real photos of people the generated-face checkpoint never trains on.
GENERATED_VALIDATION_REALS = r"^gan_more/real/"
MEDIA = re.compile(r"\.(mp4|png|jpe?g|webp|bmp)$", re.IGNORECASE)


def tool_group(method: str, tools: dict[str, str]) -> str | None:
    return next((group for prefix, group in tools.items() if method.startswith(prefix)), None)


def split_rows(manifest: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(validation, held_out, train_media) rows of the labelled media list format."""
    validation, held_out, train = [], [], []
    photos = 0
    for row in csv.DictReader(manifest.open()):
        path, kind, method = row["path"], row["kind"], row["method"]
        if not MEDIA.search(path) or kind not in ("real", "fake") or path.startswith(("gan", "ffpp")):
            continue
        chosen = None
        if kind == "fake":
            if group := tool_group(method, VALIDATION_TOOLS):
                chosen = {"path": path, "label": "fake", "group": group}
            elif group := tool_group(method, TRAIN_TOOLS):
                train.append({"path": path, "label": "fake", "group": group})
        else:
            group = next((group for pattern, group in VALIDATION_REAL_PATTERNS if re.search(pattern, path)), None)
            if group is None and re.search(DEEPFACELIVE_PHOTOS, path):
                photos += 1
                group = "real:photo" if photos % 3 == 0 else None
            if group is not None:
                chosen = {"path": path, "label": "real", "group": group}
            elif any(re.search(pattern, path) for pattern in TRAIN_REAL_PATTERNS):
                train.append({"path": path, "label": "real", "group": "real"})
        if chosen is not None:
            (held_out if shows_trained_person(row) else validation).append(chosen)
    return source_groups(validation), source_groups(held_out), train


def generated_rows(manifest: Path) -> list[dict]:
    """Rows of validation_generated.csv: unseen generators' images and the held-out real photos."""
    rows = []
    for row in csv.DictReader(manifest.open()):
        path, kind = row["path"], row["kind"]
        if not MEDIA.search(path) or not path.startswith("gan"):
            continue
        if kind == "fake" and (group := tool_group(row["method"], GENERATED_VALIDATION)):
            rows.append({"path": path, "label": "fake", "group": group})
        elif kind == "real" and re.search(GENERATED_VALIDATION_REALS, path):
            rows.append({"path": path, "label": "real", "group": "real:photo"})
    return source_groups(rows, generator_repository)


def generator_repository(path: str) -> str:
    """The source repository of a gan_more path (`gan_more/<generator or real>/<owner+repo>/...`)."""
    return path.split("/")[2]


def source_repository(path: str) -> str:
    """The source repository of a shared-data path: its second component (`fakes_swap/<owner+repo>/...`)."""
    return path.split("/")[1]


def source_groups(rows: list[dict], repository=source_repository) -> list[dict]:
    """Reals from the source repository (`repository(path)`) of exactly one tool's fakes among `rows` join that
    tool's group."""
    tools: dict[str, set[str]] = {}
    for row in rows:
        if row["label"] == "fake":
            tools.setdefault(repository(row["path"]), set()).add(row["group"])
    for row in rows:
        groups = tools.get(repository(row["path"]), set())
        if row["label"] == "real" and len(groups) == 1:
            row["group"] = next(iter(groups))
    return rows


def shows_trained_person(row: dict) -> bool:
    identities = {name.strip().lower() for name in row["identity_or_video_id"].split(";")}
    return bool(identities & set(TRAINED_IDENTITIES)) or any(part in row["path"] for part in UNLABELLED_TRAINED)


def write(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "group"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: (row["label"], row["group"], row["path"])))
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    validation, held_out, train = split_rows(args.shared_data / "MANIFEST.csv")
    here = Path(__file__).resolve().parent
    write(validation, here / "validation.csv")
    write(held_out, here / "held_out.csv")
    write(train, here / "train_media.csv")
    write(generated_rows(args.shared_data / "MANIFEST.csv"), here / "validation_generated.csv")


if __name__ == "__main__":
    main()
