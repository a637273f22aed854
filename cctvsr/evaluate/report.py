"""The evaluation as the paper's Table 2 (rich), CSV, JSON, and a side-by-side PNG sheet."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table

from cctvsr.evaluate.scoring import Evaluation
from cctvsr.fsutil import atomic_path
from cctvsr.images import write_png


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _best(evaluation: Evaluation, key: str, higher: bool) -> set[str]:
    means = {r.method.name: r.mean(key) for r in evaluation.results}
    known = {name: value for name, value in means.items() if value is not None}
    if len(known) < 2:
        return set()
    target = max(known.values()) if higher else min(known.values())
    return {name for name, value in known.items() if value == target}


def rich_table(evaluation: Evaluation, title: str) -> Table:
    """Metrics as rows (with the better direction), methods as columns; the best mean in bold.
    (The paper's Table 2 turned on its side, so that a terminal holds all ten metrics.)"""
    table = Table(title=title)
    table.add_column("metric")
    for result in evaluation.results:
        table.add_column(result.method.name, justify="right", overflow="fold")  # a model name must read whole
    shown = [m for m in evaluation.metrics if m.score is not None]
    for metric in shown:
        best = _best(evaluation, metric.key, metric.higher_is_better)
        cells = []
        for result in evaluation.results:
            text = _fmt(result.mean(metric.key))
            cells.append(f"[bold]{text}[/]" if result.method.name in best else text)
        table.add_row(f"{metric.label} {metric.arrow}", *cells)
    table.add_row("seconds / face", *(f"{r.seconds / max(1, len(evaluation.pairs)):.2f}" for r in evaluation.results))
    unavailable = [f"{m.label}: unavailable ({m.unavailable})" for m in evaluation.metrics if m.score is None]
    notes = [f"{m.label}: {m.note}" for m in shown if m.note]
    if unavailable or notes:
        table.caption = "\n".join(notes + unavailable)
    return table


def to_json(evaluation: Evaluation, extra: dict) -> dict:
    """Means, per-face values, and every unavailable metric with its reason."""
    return {
        **extra,
        "protocol": evaluation.protocol,
        "faces": [p.name for p in evaluation.pairs],
        "metrics": [
            {"key": m.key, "label": m.label, "better": "higher" if m.higher_is_better else "lower", "available": m.score is not None,
             **({"unavailable": m.unavailable} if m.score is None else {}), **({"note": m.note} if m.note else {})}
            for m in evaluation.metrics
        ],
        "methods": [
            {
                "name": r.method.name, "about": r.method.about, "seconds": r.seconds,
                "mean": {m.key: _json_number(r.mean(m.key)) for m in evaluation.metrics if m.score is not None},
                "per_face": {k: [_json_number(v) for v in values] for k, values in r.scores.items()},
            }
            for r in evaluation.results
        ],
    }


def _json_number(value: float | None) -> float | str | None:
    return "inf" if value is not None and math.isinf(value) else value


def write_json(path: Path, document: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def write_csv(path: Path, evaluation: Evaluation) -> None:
    """One row per method; one column per metric, headed with its direction; unavailable cells empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", *(f"{m.key} ({'higher' if m.higher_is_better else 'lower'} is better)" for m in evaluation.metrics), "seconds"])
    for r in evaluation.results:
        writer.writerow([r.method.name, *("" if (v := r.mean(m.key)) is None else repr(v) for m in evaluation.metrics), f"{r.seconds:.3f}"])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


_LABEL_H = 22  # the bar of a one-line label; each further line adds _LINE_H
_LINE_H = 16
_FONT, _FONT_SCALE, _PAD = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 4


def label_lines(text: str, width: int) -> list[str]:
    """`text` broken into lines that each fit a tile `width` px wide: a model name must read whole
    (cutting it at a character count turned realesrgan-x4plus into realesrgan-x4plu)."""
    lines = [""]
    for char in text:
        if lines[-1] and cv2.getTextSize(lines[-1] + char, _FONT, _FONT_SCALE, 1)[0][0] > width - 2 * _PAD:
            lines.append("")
        lines[-1] += char
    return lines


def _labelled(image: np.ndarray, lines: list[str], rows: int) -> np.ndarray:
    """The image under a bar of `rows` text lines (the most any tile of its sheet row needs)."""
    bar = np.full((_LABEL_H + _LINE_H * (rows - 1), image.shape[1], 3), 24, np.uint8)
    for index, line in enumerate(lines):
        cv2.putText(bar, line, (_PAD, 15 + _LINE_H * index), _FONT, _FONT_SCALE, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def sheet(evaluation: Evaluation, faces: int) -> np.ndarray:
    """Rows of faces: LR (nearest ×4, as the camera gave it) | each method | HR, labelled."""
    rows = []
    for index, pair in enumerate(evaluation.pairs[:faces]):
        h, w = pair.hr.shape[:2]
        images = [cv2.resize(pair.lr, (w, h), interpolation=cv2.INTER_NEAREST), *(r.outputs[index] for r in evaluation.results), pair.hr]
        labels = [label_lines(text, w) for text in ("LR", *(r.method.name for r in evaluation.results), "HR")]
        most = max(len(lines) for lines in labels)
        tiles = [_labelled(image, lines, most) for image, lines in zip(images, labels, strict=True)]
        rows.append(np.hstack([np.pad(t, ((0, 0), (0, 4), (0, 0))) for t in tiles]))
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows])


def write_outputs(out: Path, evaluation: Evaluation, extra: dict, sheet_faces: int) -> dict[str, Path]:
    """evaluation.csv, evaluation.json and sheet.png in `out`, each written atomically."""
    paths = {"csv": out / "evaluation.csv", "json": out / "evaluation.json"}
    write_csv(paths["csv"], evaluation)
    write_json(paths["json"], to_json(evaluation, extra))
    if sheet_faces:
        paths["sheet"] = out / "sheet.png"
        write_png(paths["sheet"], sheet(evaluation, sheet_faces))
    return paths
