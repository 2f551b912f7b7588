"""What encoding, indexing and training share about where and how they run: the device (cuda > mps
> cpu), the dtype (bf16 where the hardware runs it natively) and progress display."""

from __future__ import annotations

import functools
import logging

import torch

from .errors import ArrError

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise ArrError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArrError(f"device {preference!r} asked for, but torch sees no CUDA GPU")
    return device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 / AMX CPUs run bf16 matmuls natively (2.6-3x faster than fp32 for our models)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(preference: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on GPUs that support it and on CPUs with native bf16, else fp32 (never fp16 by default)."""
    if preference != "auto":
        if preference not in _DTYPES:
            raise ArrError(f"unknown dtype {preference!r}; use auto, float32, bfloat16 or float16")
        if preference == "bfloat16" and device.type == "cpu" and not cpu_has_native_bf16():
            _warn_emulated_bf16()
        return _DTYPES[preference]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


@functools.cache
def _warn_emulated_bf16() -> None:
    # measured on a 2-core AVX2 EPYC: a bf16 matmul ran at 0.3 GFLOP/s against 95 in fp32
    log.warning("bfloat16 asked for on a CPU without native bf16 (no AVX512-BF16 or AMX): its matrix multiplies "
                "are emulated, over 100x slower than float32 here; dtype auto picks float32 on this CPU")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def progress_bar(unit: str = "texts", show_loss: bool = False):
    """A rich progress bar on a terminal; plain progress lines when stderr is a file or a pipe (a
    bar would print nothing there)."""
    import sys

    if not sys.stderr.isatty():
        return PlainProgress(unit)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.3g} {unit}/s" if task.speed else "")

    loss = [TextColumn("loss {task.fields[loss]}")] if show_loss else []
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        Rate(),
        *loss,
        TimeRemainingColumn(),
        transient=not show_loss,  # a training bar stays, with its last loss
    )


class PlainProgress:
    """The part of rich's Progress interface the toolkit uses, as a line every `every` seconds."""

    def __init__(self, unit: str, every: float = 15.0):
        self.unit, self.every = unit, every
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task in self.tasks.values():
            if not task["closed"]:
                task["closed"] = True
                self._print(task)

    def add_task(self, description: str, total: int, completed: int = 0, **fields) -> int:
        import time

        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": completed,
                                       "start": completed, "fields": fields, "started": time.monotonic(),
                                       "printed": time.monotonic(), "closed": False}
        return len(self.tasks) - 1

    def update(self, task_id: int, advance: int | None = None, completed: int | None = None,
               description: str | None = None, **fields) -> None:
        import time

        task = self.tasks[task_id]
        if description is not None:
            task["description"] = description
        task["completed"] = completed if completed is not None else task["completed"] + (advance or 0)
        task["fields"].update(fields)
        now = time.monotonic()
        finished = task["completed"] >= task["total"]
        if not task["closed"] and (now - task["printed"] >= self.every or finished):
            task["printed"], task["closed"] = now, finished
            self._print(task)

    def _print(self, task: dict) -> None:
        import sys
        import time

        done, total = task["completed"], task["total"]
        line = f"{task['description']}: {done}/{total} {self.unit}"
        if total:
            line += f" ({100 * done / total:.0f}%)"
        rate = (done - task["start"]) / max(time.monotonic() - task["started"], 1e-9)
        if 0 < done < total and rate > 0:
            line += f", {rate:.3g} {self.unit}/s, about {(total - done) / rate / 60:.0f} min left"
        if "loss" in task["fields"]:
            line += f", loss {task['fields']['loss']}"
        print(line, file=sys.stderr, flush=True)
