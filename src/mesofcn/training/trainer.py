"""
Training of MesoFCN with Accelerate, with the paper's recipe as defaults (Sec. IV-D): Adam, learning rate 1e-3
decayed by 0.90 at the end of every epoch, L2 regularisation 1e-5 (Adam's weight decay), 50 epochs, validation
accuracy every 1000 steps and at each epoch end, the best checkpoint by validation accuracy kept.

    accelerate launch scripts/train.py --dataset_dir DATA --task ff-c23-df --seg_loss_weight 0.3 --output_dir O
    mesofcn train ...   (same arguments, same code)

Accelerate supplies the devices, DDP over several GPUs or machines, mixed precision and gradient accumulation.
This module is the loop: steps, learning-rate decay, validation, checkpoints to resume from and pushes. What a run
starts from (checked arguments, processor, rows, initial network) is mesofcn.training.run_setup; what it leaves in
O (best/, final/, checkpoints/step_N/, logs/, eval_log.jsonl) is mesofcn.training.run_outputs.

Settings the paper leaves open, with their defaults: batch size 32 per device, λ 0.3, seed 42, class balance by
oversampling the minority class of the training split (pristine frames of tasks with several methods), all
parameters under weight decay, BatchNorm statistics per process (no SyncBN).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .batches import make_dataloader, normalization_table, normalize_pixels
from .checkpoints import (
    CheckpointError,
    TrainingObjects,
    checkpoint_folder,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from .evaluation import collect_predictions, compute_metrics
from .hub import HubPusher
from .model_card import model_name_for
from .run_outputs import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    FINAL_DIR,
    LOGS_DIR,
    TrainingResult,
    append_eval_log,
    export_checkpoint,
    flatten_metrics,
    is_improvement,
    public_args,
    run_card,
)
from .run_setup import (
    TrainingError,
    check_args,
    dataset_dirs,
    initial_model,
    load_run_data,
    resolve_checkpoint,
    run_config,
    run_processor,
    tensorboard_available,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainingState:
    """Loop counters saved with every checkpoint, so a resumed run continues at the same step."""

    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    last_eval_step: int = -1
    train_images: int = 0
    train_seconds: float = 0.0
    #: Training batches consumed by this process (micro-batches): where the random augmentation stream resumes.
    train_batches: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# ----------------------------------------------------------------------------------------------- the run


class Trainer:
    """One training run: data, model, Accelerate objects, the loop, validation, checkpoints and pushes."""

    def __init__(self, args: argparse.Namespace, hub_api=None, step_callback: Callable[[Trainer], None] | None = None):
        from accelerate import Accelerator, DataLoaderConfiguration
        from accelerate.utils import ProjectConfiguration, set_seed

        self.args = args
        self.spec = check_args(args)
        self.output_dir = Path(args.output_dir)
        self.dataset_dirs = dataset_dirs(args)
        self.report_to = args.report_to or ("tensorboard" if tensorboard_available() else "none")
        self.step_callback = step_callback
        self.accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=None if self.report_to == "none" else self.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / LOGS_DIR)
            ),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
            step_scheduler_with_optimizer=False,
        )
        if args.deterministic and torch.cuda.is_available():
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True  # fixed 128x128 inputs: let cuDNN pick the fastest kernels
        set_seed(args.seed, deterministic=args.deterministic)
        self.state = TrainingState()
        self.last_metrics: dict = {}
        #: Set by --max_train_minutes: the monotonic time at which the loop stops, and whether it did.
        self.deadline: float | None = None
        self.stopped_for_time = False
        self.processor = run_processor(self.dataset_dirs, self.spec)
        self.config = run_config(args, self.spec)
        data = load_run_data(args, self.spec, self.dataset_dirs, self.processor, self.config)
        self.class_counts = data.class_counts
        self.train_dataset, self.eval_dataset = data.train, data.validation
        self.train_transform = data.train_transform
        self._build_model()
        self.pusher = None
        if args.push_to_hub and self.accelerator.is_main_process:
            repo = args.hub_model_id or model_name_for(self.spec.name)
            self.pusher = HubPusher(repo, self.output_dir / ".hub_snapshots", args.hub_private_repo, api=hub_api)

    def _build_model(self) -> None:
        args = self.args
        model = initial_model(args.init_model, self.config).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=args.lr_decay)
        train_loader = make_dataloader(
            self.train_dataset, args.per_device_train_batch_size, True, args.dataloader_num_workers, args.seed
        )
        eval_loader = make_dataloader(
            self.eval_dataset, args.per_device_eval_batch_size, False, args.dataloader_num_workers
        )
        prepared = self.accelerator.prepare(model, optimizer, train_loader, eval_loader, scheduler)
        self.pixel_table = torch.from_numpy(normalization_table(self.processor)).to(self.accelerator.device)
        self.model, self.optimizer, self.train_loader, self.eval_loader, self.scheduler = prepared
        self.steps_per_epoch = math.ceil(len(self.train_loader) / args.gradient_accumulation_steps)
        self.max_steps = args.max_train_steps or args.num_train_epochs * self.steps_per_epoch
        self.images_per_step = (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * self.accelerator.num_processes
        )

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def checkpointed(self) -> TrainingObjects:
        """What a checkpoint saves and restores."""
        return TrainingObjects(
            model=self.accelerator.unwrap_model(self.model),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            loop_state=self.state,
            scaler=self.accelerator.scaler,
        )

    def _save_checkpoint(self) -> None:
        """Checkpoint of the current step into checkpoints/step_N (older ones beyond the limit removed)."""
        folder = self.output_dir / CHECKPOINTS_DIR
        save_checkpoint(
            self.accelerator, self.checkpointed, folder, self.state.global_step, self.args.checkpoints_total_limit
        )

    # ------------------------------------------------------------------------------------------- loop

    def train(self) -> TrainingResult:
        from tqdm.auto import tqdm

        args, state, accelerator = self.args, self.state, self.accelerator
        if args.resume_from_checkpoint:
            self._resume(resolve_checkpoint(args.resume_from_checkpoint, self.output_dir))
        self._start_logging()
        bar = tqdm(
            total=self.max_steps,
            initial=state.global_step,
            desc=f"training {self.spec.name}",
            disable=args.disable_tqdm or not accelerator.is_local_main_process,
        )
        loss_sums = torch.zeros(3, device=accelerator.device)
        loss_batches = 0
        self.deadline = None if args.max_train_minutes is None else time.monotonic() + 60.0 * args.max_train_minutes
        while state.global_step < self.max_steps and not self.stopped_for_time:
            self.model.train()
            self.train_loader.set_epoch(state.epoch)
            loader = self.train_loader
            if state.step_in_epoch:
                loader = accelerator.skip_first_batches(
                    self.train_loader, state.step_in_epoch * args.gradient_accumulation_steps
                )
            tick = time.perf_counter()
            for batch in loader:
                state.train_batches += 1
                batch["pixel_values"] = normalize_pixels(batch["pixel_values"], self.pixel_table)
                with accelerator.accumulate(self.model):
                    outputs = self.model(**batch)
                    accelerator.backward(outputs.loss)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                loss_sums += torch.stack([outputs[name].detach().float() for name in ("loss", "cls_loss", "seg_loss")])
                loss_batches += 1
                if not accelerator.sync_gradients:
                    continue
                state.global_step += 1
                state.step_in_epoch += 1
                state.train_images += self.images_per_step
                state.train_seconds += time.perf_counter() - tick
                bar.update(1)
                if state.global_step % args.logging_steps == 0:
                    self._log_training(loss_sums / max(loss_batches, 1), bar)
                    loss_sums.zero_()
                    loss_batches = 0
                self._after_step()
                if self.step_callback is not None:
                    self.step_callback(self)
                if state.global_step >= self.max_steps or self._out_of_time():
                    break
                tick = time.perf_counter()
        bar.close()
        return self._finish()

    def _out_of_time(self) -> bool:
        """Whether --max_train_minutes has run out (decided once for all processes, so that they stop together)."""
        if self.deadline is None:
            return False
        late = torch.tensor(float(time.monotonic() >= self.deadline), device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            late = self.accelerator.reduce(late, reduction="sum")
        self.stopped_for_time = bool(late.item() > 0)
        if self.stopped_for_time and self.is_main:
            logger.info(
                "step %d: --max_train_minutes %g reached; stopping (rerun with --resume_from_checkpoint latest)",
                self.state.global_step,
                self.args.max_train_minutes,
            )
        return self.stopped_for_time

    def _after_step(self) -> None:
        """Epoch end (learning-rate decay), validation and checkpointing due after an optimizer step."""
        state, args = self.state, self.args
        epoch_end = state.step_in_epoch == self.steps_per_epoch
        if epoch_end:
            self.scheduler.step()
            state.epoch += 1
            state.step_in_epoch = 0
        validate = epoch_end or state.global_step % args.eval_steps == 0
        if validate:
            self._validate()
        every = args.checkpointing_steps
        if (
            (every == "eval" and validate)
            or (every == "epoch" and epoch_end)
            or (isinstance(every, int) and state.global_step % every == 0)
        ):
            self._save_checkpoint()

    def _resume(self, checkpoint: Path) -> None:
        """Continue from `checkpoint` (safetensors and JSON only: a folder with pickles is refused)."""
        try:
            load_checkpoint(self.accelerator, self.checkpointed, checkpoint)
        except CheckpointError as error:
            raise TrainingError(f"--resume_from_checkpoint: {error}") from error
        # The data loader skips the batches already trained on without transforming them, and the killed run's
        # loader had transformed one batch ahead: the augmentation draws continue from the trained count.
        self.train_transform.batches_drawn = self.state.train_batches
        logger.info(
            "resumed from %s at step %d (epoch %d, step %d of it)",
            checkpoint,
            self.state.global_step,
            self.state.epoch,
            self.state.step_in_epoch,
        )
        if self.state.step_in_epoch >= self.steps_per_epoch:
            raise TrainingError(
                f"{checkpoint} was saved with more steps per epoch than this run has ({self.steps_per_epoch}); "
                "resume with the same dataset, batch size, processes and accumulation"
            )

    def _start_logging(self) -> None:
        args = self.args
        if self.report_to != "none":
            config = {
                k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in public_args(args).items()
            }
            self.accelerator.init_trackers("mesofcn", config=config)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            logger.info(
                "task %s: %s training rows (%s after balancing), %s validation rows; %d steps of %d images "
                "(%d steps per epoch) on %d process(es), mixed precision %s",
                self.spec.name,
                self.class_counts["train"],
                self.class_counts["train_balanced"],
                self.class_counts["validation"],
                self.max_steps,
                self.images_per_step,
                self.steps_per_epoch,
                self.accelerator.num_processes,
                self.accelerator.mixed_precision,
            )
            if self.pusher is not None and self.pusher.repo_id is None:
                self.pusher.create_repo()

    def _log_training(self, mean_losses: torch.Tensor, bar) -> None:
        losses = self.accelerator.reduce(mean_losses, reduction="mean").tolist()
        state = self.state
        values = {
            "train/loss": losses[0],
            "train/cls_loss": losses[1],
            "train/seg_loss": losses[2],
            "train/learning_rate": self.scheduler.get_last_lr()[0],
            "train/epoch": state.epoch + state.step_in_epoch / self.steps_per_epoch,
            "train/images_per_second": state.train_images / max(state.train_seconds, 1e-9),
        }
        self.accelerator.log(values, step=state.global_step)
        bar.set_postfix(loss=f"{losses[0]:.4f}", lr=f"{values['train/learning_rate']:.2e}")
        if bar.disable and self.is_main:  # no progress bar: say it in the log instead
            logger.info(
                "step %d: loss %.4f (classification %.4f, segmentation %.4f), lr %.2e, %.1f images/s",
                state.global_step,
                *losses,
                values["train/learning_rate"],
                values["train/images_per_second"],
            )

    # ------------------------------------------------------------------------------------------- validation

    def _validate(self) -> dict:
        """Validation metrics now; keep best/ (and push it) when the chosen metric improved."""
        state, args = self.state, self.args
        predictions = collect_predictions(self.model, self.eval_loader, self.accelerator)
        metrics = compute_metrics(predictions, threshold=0.5)
        state.last_eval_step = state.global_step
        self.last_metrics = metrics
        value = metrics["frame"][args.metric_for_best_model]
        improved = is_improvement(value, state.best_metric)
        if improved:
            state.best_metric, state.best_step = value, state.global_step
        record = {"step": state.global_step, "epoch": state.epoch, **flatten_metrics(metrics), "best": improved}
        self.accelerator.log(
            {f"eval/{k}": v for k, v in flatten_metrics(metrics).items() if v is not None}, state.global_step
        )
        if self.is_main:
            append_eval_log(self.output_dir, record)
            logger.info(
                "step %d: validation accuracy %.4f, AUC %s%s",
                state.global_step,
                metrics["frame"]["accuracy"],
                "n/a" if metrics["frame"]["auc"] is None else f"{metrics['frame']['auc']:.4f}",
                " (best so far)" if improved else "",
            )
        if improved:
            self._save_best(metrics)
        return metrics

    def _save_best(self, metrics: dict) -> None:
        """Write best/ atomically on the main process (and push it): the checkpoint of the best validation."""
        if self.is_main:
            best = self.output_dir / BEST_DIR
            self._export(best, metrics)
            if self.pusher is not None:
                message = f"step {self.state.best_step}: validation {self.args.metric_for_best_model} "
                self.pusher.push_in_background(best, message + f"{self.state.best_metric:.4f}")
        self.accelerator.wait_for_everyone()

    def _export(self, folder: Path, metrics: dict) -> None:
        """The current model as `folder` (best/ or final/), with this run's arguments, card and validation metrics."""
        state = self.state
        progress = {
            "step": state.global_step,
            "best_step": state.best_step,
            "epoch": state.epoch,
            "split": self.args.validation_split,
        }
        # The card names a step only for best/ ("best checkpoint at step N"); final/ is the end of the schedule.
        card = run_card(
            self.args,
            self.spec,
            self.dataset_dirs,
            metrics,
            best_step=state.best_step if folder.name == BEST_DIR else None,
            hub_id=self.pusher.repo_id if self.pusher is not None else None,
            class_counts=self.class_counts,
        )
        model = self.accelerator.unwrap_model(self.model)
        export_checkpoint(folder, model, self.processor, self.args, {**progress, **metrics}, card)

    # ------------------------------------------------------------------------------------------- end

    def _finish(self) -> TrainingResult:
        state, accelerator = self.state, self.accelerator
        metrics = self.last_metrics
        if state.last_eval_step != state.global_step or not metrics:  # also after resuming a finished run
            metrics = self._validate()
        if self.is_main:
            self._export(self.output_dir / FINAL_DIR, metrics)
        accelerator.wait_for_everyone()
        folder = self.output_dir / CHECKPOINTS_DIR
        checkpoints = list_checkpoints(folder)
        if not checkpoints or checkpoints[-1] != checkpoint_folder(folder, state.global_step):
            self._save_checkpoint()
        if self.pusher is not None and state.best_step is not None:
            self.pusher.push_final(self.output_dir / BEST_DIR, f"end of training: best step {state.best_step}")
        throughput = state.train_images / max(state.train_seconds, 1e-9)
        if self.is_main:
            logger.info(
                "done: %d steps, best validation %s %.4f at step %s, %.1f training images/s",
                state.global_step,
                self.args.metric_for_best_model,
                state.best_metric if state.best_metric is not None else float("nan"),
                state.best_step,
                throughput,
            )
        accelerator.end_training()
        return TrainingResult(
            output_dir=self.output_dir,
            best_dir=self.output_dir / BEST_DIR,
            final_dir=self.output_dir / FINAL_DIR,
            best_step=state.best_step,
            best_metric=state.best_metric,
            global_step=state.global_step,
            images_per_second=throughput,
            final_metrics=metrics,
        )


def train(args: argparse.Namespace, hub_api=None, step_callback=None) -> TrainingResult:
    """Run training as configured by `args` (the arguments of mesofcn.cli.training.build_train_parser);
    TrainingError for unusable arguments."""
    return Trainer(args, hub_api=hub_api, step_callback=step_callback).train()


__all__ = [
    "Trainer",
    "TrainingState",
    "train",
]
