"""safetensors files written atomically and checked on load: shared by compressed models
(storage) and training checkpoints (trainer)."""

from __future__ import annotations

import glob
import hashlib
import os

import torch
from safetensors.torch import save_file

_TMP_TAG = ".emokernels-tmp-"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in sorted-name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, whatever the dtype
    return digest.hexdigest()


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier save of this process that did not finish
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str) -> None:
    """Deletes the temporaries of earlier saves to ``path`` whose writing process is gone
    (a save killed mid-write leaves one behind)."""
    for tmp in glob.glob(glob.escape(path) + _TMP_TAG + "*"):
        pid = tmp.rsplit(_TMP_TAG, 1)[1]
        if pid.isdigit() and not _writer_alive(int(pid)):
            os.remove(tmp)


def atomic_save_file(tensors: dict[str, torch.Tensor], path: str,
                     metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file`` that replaces ``path`` only once the file is whole.

    The data goes to ``<path>.emokernels-tmp-<pid>`` in the same folder (so the final rename is
    atomic), which is removed on failure, and by the next save if this process is killed.
    """
    remove_stale_temporaries(path)
    tmp = f"{path}{_TMP_TAG}{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
