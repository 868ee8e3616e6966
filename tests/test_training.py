"""Training: task rows, class balance, the paper's schedule, best-checkpoint selection, resumption, DDP, Hub push."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file

from mesofcn import MesoFCNImageProcessor
from mesofcn.cli import CommandError
from mesofcn.cli.training import add_train_parser, build_train_parser
from mesofcn.detection.modeling_mesofcn import PICKLE_SUFFIXES
from mesofcn.training.batches import FaceBatchTransform
from mesofcn.training.checkpoints import list_checkpoints, read_tree
from mesofcn.training.data import (
    DatasetError,
    balance_classes,
    class_counts,
    load_dataset_dict,
    select_task_rows,
)
from mesofcn.training.run_outputs import is_improvement
from mesofcn.training.run_setup import TrainingError, tensorboard_available
from mesofcn.training.tasks import parse_task, planned_tasks
from mesofcn.training.trainer import train
from tests.conftest import REPO_ROOT, write_tripwire_pickle
from tests.face_datasets import build_face_dataset

GAN_METHODS = ["real", "pgan", "stylegan", "stylegan3"]

# Each in-process run gets its own Accelerate state (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def ff_dataset(tmp_path_factory) -> Path:
    """Pristine, Deepfakes and Face2Face at c23 and c40; every third fake has no mask."""
    path = tmp_path_factory.mktemp("ff") / "data"
    return build_face_dataset(path, compressions=("c23", "c40"), missing_fake_mask_every=3)


def pickles_in(run: Path) -> list[str]:
    """`find RUN -name '*.pkl' -o -name '*.bin'` (and the other pickle suffixes: .pt, .pth, .ckpt)."""
    return [str(path) for path in run.rglob("*") if path.suffix in PICKLE_SUFFIXES]


def train_args(dataset: Path, output: Path, *extra: str) -> argparse.Namespace:
    argv = ["--dataset_dir", str(dataset), "--task", "ff-c23-df", "--output_dir", str(output)]
    argv += ["--per_device_train_batch_size", "8", "--report_to", "none", "--disable_tqdm", "--seed", "7", *extra]
    return build_train_parser().parse_args(argv)


# ----------------------------------------------------------------------------------------------- data


def test_task_names_select_their_rows(ff_dataset):
    train_split = load_dataset_dict(ff_dataset)["train"]
    df = select_task_rows(train_split, parse_task("ff-c23-df"), "train")
    assert set(df["compression"]) == {"c23"}
    names = train_split.features["method"].names
    assert {names[m] for m in df["method"]} == {"pristine", "Deepfakes"}
    every = select_task_rows(train_split, parse_task("FF-C40-ALL"), "train")
    assert {names[m] for m in every["method"]} == {"pristine", "Deepfakes", "Face2Face"}
    assert set(every["compression"]) == {"c40"}
    with pytest.raises(DatasetError, match=r"ff-c23-fs selects 16 real and 0 fake rows .*Deepfakes, Face2Face"):
        select_task_rows(train_split, parse_task("ff-c23-fs"), "train")
    with pytest.raises(ValueError, match="unknown task 'ff-c23-xx'"):
        parse_task("ff-c23-xx")
    assert len(planned_tasks()) == 16 and "gan-c40-all" in planned_tasks()


def test_gan_tasks_match_method_names_containing_the_source(tmp_path):
    path = build_face_dataset(
        tmp_path / "gan",
        fake_methods=("pgan", "stylegan", "stylegan3"),
        method_names=GAN_METHODS,
        real_method="real",
        split_videos={"train": 8},
        frames_per_video=1,
    )
    split = load_dataset_dict(path)["train"]
    rows = select_task_rows(split, parse_task("gan-c23-stylegan"), "train")
    assert sorted({GAN_METHODS[m] for m in rows["method"]}) == ["real", "stylegan", "stylegan3"]
    rows = select_task_rows(split, parse_task("gan-c23-pgan"), "train")
    assert sorted({GAN_METHODS[m] for m in rows["method"]}) == ["pgan", "real"]
    with pytest.raises(DatasetError, match="0 fake rows"):
        select_task_rows(split, parse_task("ff-c23-df"), "train")


def test_class_balance_oversamples_the_minority_deterministically(ff_dataset):
    rows = select_task_rows(load_dataset_dict(ff_dataset)["train"], parse_task("ff-c23-all"), "train")
    assert class_counts(rows) == {"real": 16, "fake": 32}
    balanced = balance_classes(rows, seed=3)
    assert class_counts(balanced) == {"real": 32, "fake": 32}
    assert balanced["video"] == balance_classes(rows, seed=3)["video"]


def test_transform_gives_normalized_pixels_and_grid_targets(ff_dataset):
    split = load_dataset_dict(ff_dataset)["train"]
    batch = split.select([0, 1, 8, 9, 10, 16, 17, 18])[:]  # 2 pristine, then Deepfakes and Face2Face frames
    assert batch["label"] == [0, 0, 1, 1, 1, 1, 1, 1]
    batch["mask"][:2] = [None, None]  # real faces without masks
    batch["mask"][4] = None  # a fake without a mask (the dataset drops every third fake's mask too)
    out = FaceBatchTransform(MesoFCNImageProcessor())(batch)
    pixels = np.stack(out["pixel_values"])
    assert pixels.shape == (8, 3, 128, 128) and pixels.dtype == np.float32 and pixels.min() >= -1.0
    grids = np.stack(out["mask_labels"])
    assert grids.shape == (8, 49, 49)
    labels = np.array(out["labels"])
    assert (grids[labels == 0] == 0).all()  # real faces without masks: nothing manipulated
    masked = [i for i in range(2, 8) if batch["mask"][i] is not None]
    assert len(masked) >= 3
    for index in range(2, 8):
        if index in masked:  # the 0/255 mask sampled at rows/cols 15, 17, ..., 111
            source = np.asarray(batch["mask"][index]) > 0
            assert source.any() and (grids[index] == source[15:112:2, 15:112:2]).all()
        else:  # a fake without a mask: ignored
            assert (grids[index] == -100).all()


# ----------------------------------------------------------------------------------------------- the run


def test_schedule_weight_decay_best_checkpoint_and_resume(ff_dataset, tmp_path):
    """One uninterrupted run, and the same run killed after 5 of 6 steps then resumed from its safetensors + JSON
    checkpoint: identical weights and optimizer state, and no pickle anywhere in either run folder."""
    extra = ["--max_train_steps", "6", "--eval_steps", "2", "--checkpointing_steps", "5", "--deterministic"]
    extra += ["--max_train_samples", "16", "--per_device_train_batch_size", "4"]
    seen = []

    def record(trainer):
        group = trainer.optimizer.param_groups[0]
        seen.append((trainer.state.global_step, trainer.state.epoch, group["lr"], group["weight_decay"]))

    full = train(train_args(ff_dataset, tmp_path / "full", *extra), step_callback=record)
    # 16 rows / batch 4 = 4 steps per epoch; lr = 1e-3 * 0.9^epoch, decayed when an epoch ends
    assert [(step, epoch) for step, epoch, _, _ in seen] == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1)]
    for _, epoch, lr, weight_decay in seen:
        assert lr == pytest.approx(1e-3 * 0.9**epoch) and weight_decay == 1e-5

    class Killed(Exception):
        pass

    def kill_after_checkpoint(trainer):
        if trainer.state.global_step == 5:
            raise Killed

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        train(train_args(ff_dataset, killed, *extra), step_callback=kill_after_checkpoint)
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["step_00000005"]
    saved = killed / "checkpoints" / "step_00000005"
    assert sorted(p.name for p in saved.iterdir()) == [
        "model.safetensors", "optimizer.json", "optimizer.safetensors", "rng_state_0.json",
        "rng_state_0.safetensors", "trainer_state.json",
    ]  # fmt: skip
    assert read_tree(saved, "trainer_state")["loop"]["global_step"] == 5
    resumed = train(train_args(ff_dataset, killed, *extra, "--resume_from_checkpoint", "latest"))
    assert resumed.global_step == full.global_step == 6
    step_6 = "checkpoints/step_00000006"
    for name in (f"{step_6}/model.safetensors", f"{step_6}/optimizer.safetensors", "final/model.safetensors"):
        uninterrupted, resumed_tensors = load_file(tmp_path / "full" / name), load_file(killed / name)
        assert uninterrupted.keys() == resumed_tensors.keys() and uninterrupted
        for key, tensor in uninterrupted.items():
            assert torch.equal(tensor, resumed_tensors[key]), (name, key)
    assert pickles_in(tmp_path / "full") == pickles_in(killed) == []
    first = load_file(tmp_path / "full" / "checkpoints" / "step_00000005" / "model.safetensors")
    final_full = load_file(tmp_path / "full" / step_6 / "model.safetensors")
    assert any(not torch.equal(first[k], final_full[k]) for k in first)  # the last step did change the weights

    # validations at steps 2, 4 (epoch end) and 6; best/ holds the first highest accuracy
    log = [json.loads(line) for line in (tmp_path / "full" / "eval_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [2, 4, 6]
    accuracies = [entry["frame_accuracy"] for entry in log]
    best_step = log[int(np.argmax(accuracies))]["step"]
    assert full.best_step == best_step and full.best_metric == max(accuracies)
    saved = json.loads((tmp_path / "full" / "best" / "eval_results.json").read_text())
    assert saved["best_step"] == best_step and saved["frame"]["accuracy"] == max(accuracies)
    assert json.loads((tmp_path / "full" / "best" / "training_args.json").read_text())["task"] == "ff-c23-df"


def test_resume_with_augmentation_and_online_blends_is_bit_identical(ff_dataset, tmp_path):
    """--augment and --online_self_blend draw per batch: a run killed after a checkpoint (its data loader one batch
    ahead) and resumed trains on exactly the crops an uninterrupted run trains on, so the weights are identical."""
    extra = ["--max_train_steps", "4", "--eval_steps", "4", "--checkpointing_steps", "2", "--deterministic"]
    extra += ["--max_train_samples", "16", "--per_device_train_batch_size", "4", "--augment", "--online_self_blend"]
    batches: dict[str, list] = {"full": [], "killed": [], "resumed": []}

    class Killed(Exception):
        pass

    def recorder(name):
        def record(trainer):
            batches[name].append(trainer.state.train_batches)
            if name == "killed" and trainer.state.global_step == 2:
                raise Killed  # right after the checkpoint of step 2, the data loader holding batch 3 already

        return record

    train(train_args(ff_dataset, tmp_path / "full", *extra), step_callback=recorder("full"))
    with pytest.raises(Killed):
        train(train_args(ff_dataset, tmp_path / "killed", *extra), step_callback=recorder("killed"))
    saved = read_tree(tmp_path / "killed" / "checkpoints" / "step_00000002", "trainer_state")
    assert saved["loop"]["train_batches"] == 2
    resumed = tmp_path / "killed"
    train(
        train_args(ff_dataset, resumed, *extra, "--resume_from_checkpoint", "latest"),
        step_callback=recorder("resumed"),
    )
    full_weights = load_file(tmp_path / "full" / "final" / "model.safetensors")
    resumed_weights = load_file(resumed / "final" / "model.safetensors")
    assert all(torch.equal(tensor, resumed_weights[key]) for key, tensor in full_weights.items())
    # Without numbering the draws by batch, the resumed run would redraw the augmentation of batches 1-2.
    first = load_file(tmp_path / "full" / "checkpoints" / "step_00000002" / "model.safetensors")
    assert any(not torch.equal(first[key], tensor) for key, tensor in full_weights.items())
    assert batches == {"full": [1, 2, 3, 4], "killed": [1, 2], "resumed": [3, 4]}


def test_augmentation_draws_are_numbered_by_batch(ff_dataset):
    """The same batch number gives the same augmented crops; the next number gives other ones."""
    from mesofcn.training.augmentation import FaceAugmentation

    rows = load_dataset_dict(ff_dataset)["train"].select(range(4))
    processor = MesoFCNImageProcessor()
    transform = FaceBatchTransform(processor, augmentation=FaceAugmentation(flip_probability=0.0), seed=3)
    first = transform(rows[:4])["pixel_values"]
    second = transform(rows[:4])["pixel_values"]
    transform.batches_drawn = 0
    again = transform(rows[:4])["pixel_values"]
    assert transform.batches_drawn == 1
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_is_improvement_keeps_the_first_of_equal_values():
    assert is_improvement(0.5, None) and is_improvement(0.6, 0.5)
    assert not is_improvement(0.5, 0.5) and not is_improvement(0.4, 0.5) and not is_improvement(None, 0.1)


class RecordingHubApi:
    """Stands at the HfApi boundary: records calls and what each upload would have sent."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, commit_message, run_as_future=False, **kwargs):
        folder = Path(folder_path)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        card = ModelCard.load(folder / "README.md")
        self.calls.append(
            ("upload_folder", {"repo_id": repo_id, "files": files, "card": card, "background": run_as_future})
        )
        if not run_as_future:
            return "commit"
        future = Future()
        future.set_result("commit")
        return future


def test_push_to_hub_records_repo_files_and_card_and_never_logs_the_token(ff_dataset, tmp_path, monkeypatch, capfd):
    token = "hf_SENTINELtoken0123456789"
    monkeypatch.setenv("HF_TOKEN", token)
    api = RecordingHubApi()
    output = tmp_path / "pushed"
    tracker = "tensorboard" if tensorboard_available() else "none"
    args = train_args(
        ff_dataset, output, "--max_train_steps", "4", "--eval_steps", "2", "--push_to_hub",
        "--hub_model_id", "org/mesofcn-ff-c23-df", "--report_to", tracker,
    )  # fmt: skip
    result = train(args, hub_api=api)
    creates = [kw for name, kw in api.calls if name == "create_repo"]
    uploads = [kw for name, kw in api.calls if name == "upload_folder"]
    assert creates == [{"repo_id": "org/mesofcn-ff-c23-df", "repo_type": "model", "private": False, "exist_ok": True}]
    assert len(uploads) >= 2 and uploads[-1]["background"] is False and uploads[0]["background"] is True
    assert all(upload["repo_id"] == "org/mesofcn-ff-c23-df" for upload in uploads)
    expected = {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "training_args.json"}
    expected |= {"configuration_mesofcn.py", "modeling_mesofcn.py", "image_processing_mesofcn.py"}
    assert expected <= set(uploads[-1]["files"])
    card = uploads[-1]["card"]
    results = {(r.task_type, r.metric_type): r for r in card.data.eval_results}
    accuracy = results[("image-classification", "accuracy")]
    assert accuracy.dataset_split == "validation" and accuracy.dataset_config == "c23"
    assert accuracy.metric_value == pytest.approx(result.best_metric, abs=1e-4)
    assert "97.90" in card.text and "org/mesofcn-ff-c23-df" in card.text
    assert not (output / ".hub_snapshots").exists()
    captured = capfd.readouterr()
    assert token not in captured.out + captured.err
    for path in output.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    if tracker == "tensorboard":  # the token is not in the event files either (checked above)
        assert list((output / "logs").rglob("events.out.tfevents*"))


def test_bad_arguments_are_one_line_errors(ff_dataset, tmp_path):
    parser = argparse.ArgumentParser(prog="mesofcn")
    add_train_parser(parser.add_subparsers(dest="command"))
    base = ["train", "--output_dir", str(tmp_path / "o"), "--report_to", "none"]
    cases = {
        "does not exist": ["--dataset_dir", str(tmp_path / "missing"), "--task", "ff-c23-df"],
        "unknown task 'ff-c99-df'": ["--dataset_dir", str(ff_dataset), "--task", "ff-c99-df"],
        "selects 16 real and 0 fake rows": ["--dataset_dir", str(ff_dataset), "--task", "ff-c23-nt"],
        "seg_loss_weight must be between 0 and 1": ["--dataset_dir", str(ff_dataset), "--seg_loss_weight", "1.5"],
    }
    for message, argv in cases.items():
        argv = argv if "--task" in argv else [*argv, "--task", "ff-c23-df"]
        args = parser.parse_args(base + argv)
        with pytest.raises(CommandError, match=message) as caught:
            args.handler(args)
        assert "\n" not in str(caught.value)
    with pytest.raises(TrainingError, match="no such checkpoint folder"):
        train(train_args(ff_dataset, tmp_path / "o", "--resume_from_checkpoint", str(tmp_path / "nope")))


def test_resume_refuses_an_accelerate_pickle_checkpoint_without_unpickling_it(ff_dataset, tmp_path):
    """A checkpoint written by the Accelerate-based versions (pickled RNG and loop state) is refused, unread."""
    old = tmp_path / "run" / "checkpoints" / "step_00000002"
    old.mkdir(parents=True)
    marker = tmp_path / "unpickled"
    for name in ("random_states_0.pkl", "custom_checkpoint_0.pkl", "optimizer.bin", "scheduler.bin"):
        write_tripwire_pickle(old / name, marker)
    argv = ["--max_train_samples", "8", "--per_device_train_batch_size", "4", "--resume_from_checkpoint", "latest"]
    with pytest.raises(TrainingError, match=r"custom_checkpoint_0\.pkl: a pickle; this checkpoint predates") as caught:
        train(train_args(ff_dataset, tmp_path / "run", *argv))
    assert "\n" not in str(caught.value) and not marker.exists()


def test_max_train_minutes_stops_saves_and_resumes(ff_dataset, tmp_path):
    """A time-boxed run stops after the step that passes its deadline with final/ and a resumable checkpoint; the
    rerun without the limit continues to --max_train_steps."""
    extra = ["--max_train_steps", "3", "--eval_steps", "2", "--max_train_samples", "8"]
    extra += ["--per_device_train_batch_size", "4"]
    output = tmp_path / "boxed"
    boxed = train(train_args(ff_dataset, output, *extra, "--max_train_minutes", "1e-6"))
    assert boxed.global_step == 1
    assert (output / "final" / "model.safetensors").is_file()
    assert [folder.name for folder in list_checkpoints(output / "checkpoints")] == ["step_00000001"]
    resumed = train(train_args(ff_dataset, output, *extra, "--resume_from_checkpoint", "latest"))
    assert resumed.global_step == 3
    with pytest.raises(SystemExit):
        train_args(ff_dataset, output, *extra, "--max_train_minutes", "0")


def test_init_model_continues_from_a_finished_runs_weights(ff_dataset, tmp_path):
    from safetensors.torch import load_file

    extra = ["--max_train_steps", "1", "--max_train_samples", "8", "--per_device_train_batch_size", "4"]
    train(train_args(ff_dataset, tmp_path / "first", *extra))
    first = load_file(str(tmp_path / "first" / "final" / "model.safetensors"))
    starts = []

    def record(trainer):
        if not starts:
            weights = trainer.accelerator.unwrap_model(trainer.model).state_dict()
            starts.append({name: weights[name].detach().clone() for name in first})

    # The callback runs after the first step: with learning rate ~0 the weights are still the initial ones.
    again = ["--init_model", str(tmp_path / "first" / "final"), "--learning_rate", "1e-12", "--weight_decay", "0"]
    train(train_args(ff_dataset, tmp_path / "second", *extra, *again), step_callback=record)
    convolutions = [name for name, tensor in first.items() if tensor.ndim == 4]
    assert len(convolutions) >= 8
    for name in convolutions:
        assert torch.allclose(starts[0][name], first[name], atol=1e-6), name
    (tmp_path / "pickled").mkdir()
    marker = tmp_path / "unpickled"
    write_tripwire_pickle(tmp_path / "pickled" / "pytorch_model.bin", marker)
    with pytest.raises(TrainingError, match=r"pytorch_model\.bin: pickle weights are refused"):
        train(train_args(ff_dataset, tmp_path / "third", *extra, "--init_model", str(tmp_path / "pickled")))
    assert not marker.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no model.safetensors there"):
        train(train_args(ff_dataset, tmp_path / "fourth", *extra, "--init_model", str(tmp_path / "empty")))


# ----------------------------------------------------------------------------------------------- DDP


def test_two_process_ddp_run_on_cpu_and_the_checkpoint_loads_everywhere(ff_dataset, tmp_path):
    output = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO_ROOT / "scripts" / "train.py"),
        "--dataset_dir", str(ff_dataset), "--task", "ff-c23-df", "--output_dir", str(output),
        "--per_device_train_batch_size", "4", "--max_train_steps", "3", "--eval_steps", "2", "--report_to", "none",
        "--disable_tqdm",
    ]  # fmt: skip
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "on 2 process(es)" in finished.stderr
    assert [p.name for p in list_checkpoints(output / "checkpoints")] == ["step_00000002", "step_00000003"]
    for process in (0, 1):  # each process's random states, as safetensors + JSON
        assert (output / "checkpoints" / "step_00000003" / f"rng_state_{process}.safetensors").is_file()
        assert (output / "checkpoints" / "step_00000003" / f"rng_state_{process}.json").is_file()
    assert pickles_in(output) == []
    log = [json.loads(line) for line in (output / "eval_log.jsonl").read_text().splitlines()]
    assert [entry["frame_num_frames"] for entry in log] == [16, 16]  # gathered from both processes, no padding

    from transformers import AutoModel, pipeline

    import mesofcn  # noqa: F401  (registers the Auto classes and the pipeline)

    best = output / "best"
    model = AutoModel.from_pretrained(best)
    assert type(model).__name__ == "MesoFCNForDeepfakeDetection"
    face = Image.fromarray(np.full((128, 128, 3), 120, dtype=np.uint8))
    scores = pipeline("image-classification", model=str(best), trust_remote_code=False)(face)
    assert {s["label"] for s in scores} == {"real", "fake"} and sum(s["score"] for s in scores) == pytest.approx(1)
    segments = pipeline("image-segmentation", model=str(best), trust_remote_code=False)(face)
    assert segments and segments[0]["mask"].size == (128, 128)
    report = pipeline("deepfake-detection", model=str(best), trust_remote_code=False)
    assert report.model.config.seg_loss_weight == 0.3
    card = ModelCard.load(best / "README.md")
    assert card.data.eval_results[0].dataset_split == "validation"
    remote = AutoModel.from_pretrained(best, trust_remote_code=True)
    assert torch.equal(remote.classifier.weight, model.classifier.weight)
