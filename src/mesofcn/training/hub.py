"""
Pushing a training run's best checkpoint to the Hugging Face Hub: one model repository per task, created once,
then `upload_folder` of `best/` at every improvement (in the background, from a frozen snapshot so training can
overwrite `best/` meanwhile) and once more, blocking, at the end. The token is whatever `HfApi` finds (the
`HF_TOKEN` variable or `hf auth login`); this module never reads, passes or logs it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from concurrent.futures import Future
from pathlib import Path

logger = logging.getLogger(__name__)


class HubPusher:
    """Uploads snapshots of a checkpoint folder to one Hub model repository through an `HfApi`-like object."""

    def __init__(self, repo_id: str, snapshot_root: str | Path, private: bool = False, api=None):
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        self.api = api
        self.requested_repo_id = repo_id
        self.private = private
        self.snapshot_root = Path(snapshot_root)
        self.repo_id: str | None = None
        self.pending: list[Future] = []
        self.failures: list[str] = []

    def create_repo(self) -> str:
        """Create the repository if needed; returns its full id (`org/name`)."""
        url = self.api.create_repo(self.requested_repo_id, repo_type="model", private=self.private, exist_ok=True)
        self.repo_id = getattr(url, "repo_id", None) or self.requested_repo_id
        logger.info("pushing the best checkpoint to https://huggingface.co/%s", self.repo_id)
        return self.repo_id

    def push_in_background(self, folder: str | Path, message: str) -> Future:
        """Upload a frozen copy of `folder` without waiting; the copy is deleted when the upload ends."""
        if self.repo_id is None:
            self.create_repo()
        self.snapshot_root.mkdir(parents=True, exist_ok=True)
        snapshot = self.snapshot_root / f"{Path(folder).name}-{len(self.pending) + len(self.failures):04d}"
        shutil.rmtree(snapshot, ignore_errors=True)
        shutil.copytree(folder, snapshot)
        future = self.api.upload_folder(
            repo_id=self.repo_id, folder_path=str(snapshot), commit_message=message, run_as_future=True
        )
        future.add_done_callback(lambda done: self._finished(done, snapshot, message))
        self.pending.append(future)
        return future

    def _finished(self, future: Future, snapshot: Path, message: str) -> None:
        shutil.rmtree(snapshot, ignore_errors=True)
        error = future.exception()
        if error is not None:
            self.failures.append(f"{message}: {type(error).__name__}")
            logger.warning("upload to %s failed (%s); the final push will retry", self.repo_id, type(error).__name__)

    def push_final(self, folder: str | Path, message: str) -> None:
        """Wait for the background uploads, then upload `folder` and wait for it (errors propagate)."""
        if self.repo_id is None:
            self.create_repo()
        for future in self.pending:
            with contextlib.suppress(Exception):  # logged by _finished; the upload below supersedes it
                future.result()
        self.pending.clear()
        self.api.upload_folder(repo_id=self.repo_id, folder_path=str(folder), commit_message=message)
        logger.info("pushed %s to https://huggingface.co/%s", folder, self.repo_id)
        shutil.rmtree(self.snapshot_root, ignore_errors=True)


__all__ = ["HubPusher"]
