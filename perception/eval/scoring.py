"""``perception eval`` end to end: each model scored on a dataset, one ``metrics.json`` per model (in its own
folder when there are several), ``comparison.json`` for several, and ``report.md``.

Two kinds of data: labelled frames (masks and boxes: ``score_models``, through ``evaluate``) and TuSimple
lanes (``score_tusimple_models``: each model through the pipeline and scene fusion of ``perception run``,
its lanes scored in TuSimple's format, with ``tusimple_predictions.json``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from perception.config import PipelineConfig
from perception.errors import ConfigError
from perception.eval.evaluate import evaluate
from perception.eval.predictors import build_predictor
from perception.eval.report import (
    metrics_payload,
    nan_to_null,
    safe_name,
    write_eval_plots,
    write_metrics_json,
    write_report,
)
from perception.eval.tusimple import PREDICTIONS_FILE, build_lane_predictor, evaluate_tusimple
from perception.paths import ensure_writable_dir

log = logging.getLogger(__name__)


def score_models(
    models: list[str],
    dataset,
    data: str,
    split: str,
    out: Path,
    threads: int = 0,
    score: float | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, dict[str, float]], Path]:
    """Score every model spec (``build_predictor``) on ``dataset`` (``data``: its KIND:PATH, ``split``);
    write metrics.json and plots per model, comparison.json and report.md under ``out``. Returns (metrics
    per model name, the report's path)."""
    results: dict[str, dict[str, float]] = {}
    for spec in models:
        predictor = build_predictor(spec, threads=threads, score_threshold=score)
        log.info("evaluating %s on %s %s (%d samples)", spec, dataset.kind, split, len(dataset))
        try:
            result = evaluate(predictor, dataset, max_frames=max_frames, progress=progress)
        except ValueError as err:
            raise ConfigError(f"{spec} on {data}: {err}") from err
        name = spec if spec not in results else f"{spec}#{len(results)}"
        results[name] = result.metrics
        target = out if len(models) == 1 else out / safe_name(name)
        ensure_writable_dir(target)
        write_metrics_json(target, metrics_payload(spec, data, split, result))
        write_eval_plots(target, result, predictor, dataset)
        if result.skipped.total:
            log.warning("%d samples could not be loaded (see metrics.json 'skipped')", result.skipped.total)
    return results, _compare_and_report(results, models, dataset, data, split, out)


def score_tusimple_models(
    models: list[str],
    dataset,
    data: str,
    split: str,
    out: Path,
    config: PipelineConfig,
    config_file: str | os.PathLike | None = None,
    threads: int = 0,
    score: float | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, dict[str, float]], Path]:
    """TuSimple lanes: every model spec through the pipeline and scene fusion of ``config`` (the preset of
    ``perception run``), its lanes scored; metrics.json and tusimple_predictions.json per model,
    comparison.json and report.md. Returns (metrics per model name, the report's path)."""
    results: dict[str, dict[str, float]] = {}
    for spec in models:
        predictor = build_lane_predictor(spec, config, config_file, threads=threads, score_threshold=score)
        name = spec if spec not in results else f"{spec}#{len(results)}"
        target = out if len(models) == 1 else out / safe_name(name)
        ensure_writable_dir(target)
        log.info("evaluating %s lanes on %s (%d samples)", spec, data, len(dataset))
        result = evaluate_tusimple(
            predictor, dataset, target / PREDICTIONS_FILE, max_frames=max_frames, progress=progress
        )
        results[name] = result.metrics
        write_metrics_json(target, metrics_payload(spec, data, split, result, files={"predictions": PREDICTIONS_FILE}))
        if result.skipped.total:
            log.warning("%d samples could not be loaded (see metrics.json 'skipped')", result.skipped.total)
    return results, _compare_and_report(results, models, dataset, data, split, out)


def _compare_and_report(results, models, dataset, data: str, split: str, out: Path) -> Path:
    if len(models) > 1:
        (out / "comparison.json").write_text(json.dumps(nan_to_null(results), indent=2) + "\n")
    return write_report(out, results, data, split, dataset.seg_classes, dataset.det_classes)
