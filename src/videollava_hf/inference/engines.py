"""Where the two stages of the answer path run, for batch jobs (`describe`, `eval`):

- local, `num_workers=0`: prepare and generate in this process, one batch after the other;
- local, `num_workers=N`: a torch DataLoader prepares whole batches in N worker processes while this process
  generates (batches come back in order);
- accelerate: `accelerate launch -m videollava_hf.cli ...` starts one process per device; each takes every
  world-th batch of the same plan (`Shard`), writes its own part file, and rank 0 merges the parts in input order;
- Ray Data (`ray_answers`): preparing as CPU tasks, the model in actors that load it once (a GPU each where there
  are GPUs), results collected by the driver, which writes them in input order.

Every engine runs the same batch plan (`batch_plan`: consecutive items, `batch_size` per batch, in input order),
and every batch goes through `generate_batch`, so rows are identical across engines (greedy decoding).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.jsonl import JsonlWriter, read_jsonl
from .generate import GenerationSettings, Prepared, Request, generate_batch, prepare

ENGINES = ("local", "ray")


def batch_plan(count: int, batch_size: int) -> list[list[int]]:
    """Positions of `count` items in batches of `batch_size`, in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


# --- the model ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """What to load where: a picklable recipe for (model, processor), so worker processes and Ray actors load the
    model themselves, once."""

    model_id: str
    device: str = "cpu"
    dtype: str = "float32"

    def load(self):
        import torch

        from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration
        from ..models.videollava.pipeline_video_text_to_text import load_processor

        model = VideoLlavaForConditionalGeneration.from_pretrained(self.model_id, dtype=getattr(torch, self.dtype))
        model = model.to(self.device).eval()
        return model, load_processor(self.model_id, config=model.config)


# --- local: in this process or in DataLoader workers ----------------------------------------------------------------


class PreparedBatches:
    """A map-style dataset whose item b is batch b of the plan, prepared: (b, [Prepared, ...])."""

    def __init__(self, processor, requests: Sequence[Request], plan: Sequence[Sequence[int]],
                 settings: GenerationSettings, prepare_fn: Callable = prepare):
        self.processor, self.requests, self.plan, self.settings = processor, requests, plan, settings
        self.prepare_fn = prepare_fn

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, b: int) -> tuple[int, list[Prepared]]:
        return b, [self.prepare_fn(self.processor, self.requests[i], self.settings) for i in self.plan[b]]


def _as_is(item):
    return item


def _one_thread(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # N workers share the machine with the model; each decodes on one core


def prepared_batches(processor, requests: Sequence[Request], plan: Sequence[Sequence[int]],
                     settings: GenerationSettings, num_workers: int = 0,
                     prepare_fn: Callable = prepare) -> Iterator[tuple[int, list[Prepared]]]:
    """(b, prepared batch b) for every batch of `plan`, in plan order; with `num_workers > 0` they are prepared
    ahead in worker processes (two batches per worker in flight) while the caller generates."""
    dataset = PreparedBatches(processor, requests, plan, settings, prepare_fn)
    if num_workers == 0:
        for b in range(len(dataset)):
            yield dataset[b]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_as_is,
                        worker_init_fn=_one_thread, prefetch_factor=2, persistent_workers=False)
    yield from loader


# --- accelerate: one process per device, each a shard of the plan --------------------------------------------------


@dataclass
class Shard:
    """This process's place among the processes `accelerate launch` started (rank 0 of 1 without it)."""

    rank: int = 0
    world: int = 1
    state: Any = None

    def batches(self, plan: Sequence[Sequence[int]]) -> list[int]:
        """The batch indices this process answers: every world-th batch, starting at its rank."""
        return list(range(self.rank, len(plan), self.world))

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def total(self, value: int) -> int:
        """`value` summed over all processes (a barrier too)."""
        if self.state is None:
            return value
        import torch
        import torch.distributed as dist

        summed = torch.tensor([value], device=self.state.device)
        dist.all_reduce(summed)
        return int(summed.item())

    @property
    def device(self):
        return None if self.state is None else self.state.device


def current_shard() -> Shard:
    """The accelerate process group when launched with `accelerate launch` (WORLD_SIZE > 1), else a single shard."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard()
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU-only machines, NCCL on GPUs
    return Shard(state.process_index, state.num_processes, state)


def part_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.part{rank}")


def part_paths(out: Path) -> list[Path]:
    """Part files left next to `out` by sharded runs (of any world size)."""
    return sorted(out.parent.glob(f"{out.name}.part*"))


def read_with_parts(out: Path) -> list[dict]:
    """The records of `out` and of its part files (an interrupted sharded run): what a resume counts as done."""
    return [r for path in [out, *part_paths(out)] for r in read_jsonl(path)]


def merge_parts(out: Path, position: Callable[[dict], int]) -> tuple[int, int]:
    """Append the part files' records to `out` in input order (`position` of a record) and delete the parts.
    Returns (records merged, torn bytes cut from `out`)."""
    parts = part_paths(out)
    records = sorted((r for path in parts for r in read_jsonl(path)), key=position)
    with JsonlWriter(out) as sink:
        sink.write(records)
    for path in parts:
        path.unlink()
    return len(records), sink.repaired_bytes


# --- Ray Data ------------------------------------------------------------------------------------------------------


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ImportError(f"The Ray engine needs Ray Data ({err}): pip install 'videollava-hf[ray]'.") from err
    return ray


def quiet_ray() -> None:
    """For command-line use: no Ray Data progress bars or per-dataset log lines on the terminal (the command shows
    its own progress)."""
    import logging

    context = import_ray().data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _prepare_row(row: dict, processor, settings: GenerationSettings, prepare_fn: Callable) -> dict:
    requests = pickle.loads(row["requests"])
    prepared = [prepare_fn(processor, r, settings) for r in requests]
    return {"batch": row["batch"], "prepared": pickle.dumps(prepared)}


class _ModelActor:
    """Holds the model once; answers one prepared batch per call."""

    def __init__(self, spec: ModelSpec, settings: GenerationSettings):
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.model, self.processor = spec.load()
        self.settings = settings

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        results = [pickle.dumps(generate_batch(self.model, self.processor, pickle.loads(p), self.settings))
                   for p in batch["prepared"]]
        return {"batch": np.asarray(batch["batch"]), "results": np.asarray(results, dtype=object)}


def ray_answers(spec: ModelSpec, processor, requests: Sequence[Request], plan: Sequence[Sequence[int]],
                settings: GenerationSettings, *, batches: Sequence[int] | None = None, address: str | None = None,
                num_actors: int = 1, num_cpus: int | None = None,
                prepare_fn: Callable = prepare) -> Iterator[tuple[int, list[dict]]]:
    """(b, results of batch b) for the given batches of `plan` (default: all), yielded in plan order, computed by a
    Ray Data pipeline on the cluster at `address` (None: a local `ray.init()`)."""
    import functools

    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    todo = list(range(len(plan)) if batches is None else batches)
    if not todo:
        return
    rows = [{"batch": b, "requests": pickle.dumps([requests[i] for i in plan[b]])} for b in todo]
    use_gpu = spec.device.startswith("cuda")
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    dataset = dataset.map(
        functools.partial(_prepare_row, processor=processor, settings=settings, prepare_fn=prepare_fn),
        num_cpus=1,  # Ray Data runs a crashed task again (its rows are emitted once, by the attempt that finished)
    )
    dataset = dataset.map_batches(
        _ModelActor, fn_constructor_kwargs={"spec": spec, "settings": settings}, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=num_actors), num_gpus=1 if use_gpu else 0,
        num_cpus=0 if use_gpu else 1,
    )  # Ray Data restarts a crashed model actor and retries its batch
    waiting: dict[int, list[dict]] = {}
    order = iter(todo)
    expected = next(order)
    for row in dataset.iter_rows():
        waiting[int(row["batch"])] = pickle.loads(row["results"])
        while expected is not None and expected in waiting:  # hand batches on in plan order
            yield expected, waiting.pop(expected)
            expected = next(order, None)



# --- one entry point for batch jobs -------------------------------------------------------------------------------


def answer_batches(requests: Sequence[Request], plan: Sequence[Sequence[int]], settings: GenerationSettings, *,
                   processor, batches: Sequence[int] | None = None, engine: str = "local", num_workers: int = 0,
                   model=None, spec: ModelSpec | None = None, ray_address: str | None = None,
                   ray_actors: int = 1, run_batch: Callable | None = None) -> Iterator[tuple[int, list[dict]]]:
    """(b, results of batch b) for `batches` of `plan` (default: all), in plan order, on `engine`.

    local: `run_batch(b, prepared)` (default: `generate_batch` with `model`) answers each batch, `prepared` coming
    from `num_workers` DataLoader workers (None with `num_workers=0`: `run_batch` prepares it itself).
    ray: `spec` says what each of the `ray_actors` model actors loads."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
    todo = list(range(len(plan)) if batches is None else batches)
    if engine == "ray":
        if spec is None:
            raise ValueError("engine='ray' needs a ModelSpec (what each model actor loads).")
        yield from ray_answers(spec, processor, requests, plan, settings, batches=todo, address=ray_address,
                               num_actors=ray_actors)
        return
    if run_batch is None:
        def run_batch(b, prepared):
            if prepared is None:
                prepared = [prepare(processor, requests[i], settings) for i in plan[b]]
            return generate_batch(model, processor, prepared, settings)
    if num_workers == 0:
        for b in todo:
            yield b, run_batch(b, None)
        return
    subset = [plan[b] for b in todo]
    for k, prepared in prepared_batches(processor, requests, subset, settings, num_workers):
        yield todo[k], run_batch(todo[k], prepared)

__all__ = [
    "ENGINES",
    "ModelSpec",
    "answer_batches",
    "PreparedBatches",
    "Shard",
    "batch_plan",
    "current_shard",
    "merge_parts",
    "part_path",
    "part_paths",
    "prepared_batches",
    "quiet_ray",
    "ray_answers",
    "read_with_parts",
]
