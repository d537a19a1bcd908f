"""safetensors files written atomically and checked on load: shared by compressed models
(storage) and training checkpoints (trainer)."""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

_TMP_TAG = ".emokernels-tmp-"

# safetensors' names of the dtypes these files hold.
SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
                      torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64",
                      torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL",
                      torch.int16: "I16"}
_TORCH_DTYPES = {name: dtype for dtype, name in SAFETENSORS_DTYPES.items()}


def digest_update(digest: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    """Adds one tensor's name, dtype, shape and bytes to a :func:`tensor_digest` in progress
    (tensors must come in sorted-name order)."""
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, whatever the dtype


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in sorted-name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest_update(digest, name, tensors[name])
    return digest.hexdigest()


class TensorFile:
    """A safetensors file read a tensor, or a block of a tensor's rows, at a time (CPU).

    Plain reads into new tensors, no memory map: what is read is held once, as ordinary
    memory, whatever the safetensors version (some copy each tensor out of a map whose pages
    count too, newer ones return tensors backed by the map, which keep the file mapped while
    the model lives). safetensors validates the file first: a malformed or truncated one is a
    ``ValueError``. ``entries`` maps each name to ``(shape, safetensors dtype name)``.
    """

    def __init__(self, path: str) -> None:
        try:
            with safe_open(path, framework="pt"):
                pass
        except SafetensorError as err:
            raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
        self.path = path
        self._file = open(path, "rb", buffering=0)
        try:
            size = int.from_bytes(self._file.read(8), "little")
            header = json.loads(self._file.read(size))
        except BaseException:
            self._file.close()
            raise
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._data_start = 8 + size
        self._offsets = {name: e["data_offsets"][0] for name, e in header.items()}
        self.entries = {name: (tuple(e["shape"]), e["dtype"]) for name, e in header.items()}

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def read(self, name: str, rows: slice | None = None) -> torch.Tensor:
        """The tensor ``name``, or the rows ``rows`` (a slice of step 1) of its first dim."""
        shape, dtype, offset = self._locate(name, rows)
        return self._fill(torch.empty(shape, dtype=dtype), offset, name)

    def read_blocks(self, name: str, blocks: Sequence[slice]) -> Iterator[torch.Tensor]:
        """The rows ``blocks`` of the tensor ``name``, one block after another, each read into
        the same buffer: a block is overwritten by the next (one allocation for a stream)."""
        located = [self._locate(name, rows) for rows in blocks]
        size = max((math.prod(shape) for shape, _, _ in located), default=0)
        buffer = torch.empty(size, dtype=self._dtype(name))
        for shape, _, offset in located:
            yield self._fill(buffer[: math.prod(shape)].view(shape), offset, name)

    def _dtype(self, name: str) -> torch.dtype:
        dtype_name = self.entries[name][1]
        if dtype_name not in _TORCH_DTYPES:
            raise ValueError(f"{self.path}: {name} has the unsupported dtype {dtype_name}")
        return _TORCH_DTYPES[dtype_name]

    def _locate(self, name: str, rows: slice | None) -> tuple[tuple[int, ...], torch.dtype, int]:
        """``(shape, dtype, byte offset in the data)`` of a tensor or a slice of its rows."""
        shape, dtype, offset = self.entries[name][0], self._dtype(name), self._offsets[name]
        if rows is not None:
            start, stop, step = rows.indices(shape[0])
            if step != 1:
                raise ValueError(f"TensorFile: rows must be a slice of step 1, got {rows}")
            offset += start * math.prod(shape[1:]) * dtype.itemsize
            shape = (max(0, stop - start), *shape[1:])
        return shape, dtype, offset

    def _fill(self, tensor: torch.Tensor, offset: int, name: str) -> torch.Tensor:
        """Reads ``tensor``'s bytes (contiguous) from ``offset`` in the data; returns it."""
        buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
        self._file.seek(self._data_start + offset)
        done = 0
        while done < len(buffer):  # one read returns at most ~2 GiB
            count = self._file.readinto(buffer[done:])
            if not count:
                raise ValueError(f"{self.path} is truncated: {name} ends past its end")
            done += count
        return tensor


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
