"""``perception eval`` sharded over Ray workers, merged exactly.

Each worker loads the dataset and the model once and turns shards (contiguous sample ranges) into
``EvalAccumulator`` values; the driver merges them in sample order. Confusion matrices and boundary counts
are summed, detection matches are concatenated per image and AP is computed once over all of them, so
the metrics equal a single-process ``perception eval`` on the same data (speed figures aside: they are
timings).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from perception.eval.evaluate import EvalAccumulator, EvalResult, evaluate_range
from perception.fleet.run import start_ray
from perception.progress import Progress

log = logging.getLogger(__name__)


class EvalWorker:
    """One dataset and one predictor, loaded once; Ray runs it as an actor."""

    def __init__(
        self, model: str, kind: str, root: str, split: str, class_map: str | None, threads: int, score: float | None
    ):
        from perception.data.registry import build_dataset
        from perception.eval.predictors import build_predictor
        from perception.runner import configure_host_threads

        configure_host_threads()
        self.dataset = build_dataset(kind, root, split=split, class_map=class_map)
        self.predictor = build_predictor(model, threads=threads, score_threshold=score)

    def shard(self, start: int, end: int, boundary_tolerance_px: float) -> EvalAccumulator:
        return evaluate_range(self.predictor, self.dataset, start, end, boundary_tolerance_px)


def fleet_evaluate(
    model: str,
    kind: str,
    root: str,
    split: str,
    *,
    class_map: str | None = None,
    workers: int = 2,
    shard_size: int = 50,
    address: str | None = None,
    score: float | None = None,
    max_frames: int | None = None,
    boundary_tolerance_px: float = 2.0,
    progress: bool = True,
    threads: int = 1,
) -> EvalResult:
    """Evaluate ``model`` on the dataset over ``workers`` Ray actors, ``shard_size`` samples per task."""
    from perception.data.registry import build_dataset

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    n = len(build_dataset(kind, root, split=split, class_map=class_map))
    if max_frames is not None:
        n = min(n, max_frames)
    if n == 0:
        raise ValueError(f"{kind}:{root} ({split}) has no samples to evaluate")
    ray = start_ray(address, workers)
    actor_cls = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(EvalWorker)
    actors = [actor_cls.remote(model, kind, root, split, class_map, threads, score) for _ in range(workers)]
    shards = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    refs: dict[Any, int] = {}
    for k, (s, e) in enumerate(shards):
        refs[actors[k % workers].shard.remote(s, e, boundary_tolerance_px)] = k
    bar = Progress(n, enabled=progress, unit="samples")
    done: dict[int, EvalAccumulator] = {}
    pending = list(refs)
    samples = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        k = refs[ready[0]]
        done[k] = ray.get(ready[0])
        samples += shards[k][1] - shards[k][0]
        bar.update(samples)
    bar.finish()
    # Arrays that come back from Ray are read-only views of its object store: merge into a copy.
    total = copy.deepcopy(done[0])
    for k in range(1, len(shards)):
        total.merge(done[k])  # in sample order: detection images keep their order, as in one process
    for a in actors:
        ray.kill(a)
    log.info("evaluated %d samples in %d shards on %d workers", n, len(shards), workers)
    return total.result()
