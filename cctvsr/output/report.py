"""report.html: each track's best face as LR | bicubic | fused | SR | fused SR, readable offline and when copied.

Only relative links and inline CSS: no network resource, so the folder can be handed over as is.
Every super-resolved image is labelled as AI-enhanced, never as an original, and as an investigative
lead; the multi-frame reconstruction (no learned prior) is the one offered for comparison with the original.
"""

from __future__ import annotations

import html
from pathlib import Path

from cctvsr.fsutil import atomic_path
from cctvsr.output.records import Sighting, TracksDocument

AI_LABEL = "AI-enhanced — not an original image"
LEAD_LABEL = "investigative lead — not for identification"
COMPARE_LABEL = "for comparison with the original"


def fusion_label(frames: int) -> str:
    """What a fused face is, in the words its PNG and the report use."""
    return f"multi-frame reconstruction, {frames} frames, no learned prior"


def sr_png_text(model_label: str, source: str | None = None) -> dict[str, str]:
    """The text chunks every super-resolved PNG carries, so the file says what it is on its own."""
    from cctvsr import __version__

    of = f" from {source}" if source else ""
    return {
        "Comment": f"{AI_LABEL}. Super-resolved ×4 by cctvsr with model {model_label}{of}.",
        "Software": f"cctvsr {__version__}",
    }


def fusion_png_text(frames: int) -> dict[str, str]:
    """The text chunks of a fused face's PNG: classical reconstruction, how many frames, no network."""
    from cctvsr import __version__
    from cctvsr.fusion.fuse import METHOD

    return {
        "Comment": f"{fusion_label(frames)}. ×4 by cctvsr from {frames} registered frames of one track ({METHOD}); "
        "every detail comes from the footage, none from a trained model.",
        "Software": f"cctvsr {__version__}",
    }

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:2em}
table.meta td{padding:.1em .8em .1em 0;vertical-align:top}
.faces{display:flex;gap:1.5em;align-items:flex-end;flex-wrap:wrap}
figure{margin:0;text-align:center} figcaption{font-size:.85em;margin-top:.3em}
img{image-rendering:pixelated;border:1px solid #999;background:#fff}
.ai{color:#a00;font-weight:bold} .fused{color:#060;font-weight:bold}
"""


def _when(point: Sighting) -> str:
    text = f"frame {point.frame}"
    if point.pts is not None:
        text += f", {point.pts:.2f} s"
    if point.wall_time:
        text += f", {point.wall_time}"
    return text


def _figure(path: str, caption: str, width: int, extra_class: str = "") -> str:
    return (
        f'<figure><img src="{html.escape(path)}" width="{width}" alt="{html.escape(caption)}">'
        f'<figcaption class="{extra_class}">{html.escape(caption)}</figcaption></figure>'
    )


def render_report(document: TracksDocument) -> str:
    """HTML for a tracks.json document."""
    source = document.input
    rows = [
        ("input", source["label"]),
        ("sha256", source.get("sha256") or "-"),
        ("model", f"{document.model['name']} (weights sha256 {document.model['sha256']})"),
        ("tracks", str(len(document.tracks))),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>cctvsr report — {html.escape(source['label'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>cctvsr report — {html.escape(source['label'])}</h1>",
        f'<p class="ai">Super-resolved images are {html.escape(AI_LABEL.split(" — ")[0])}: '
        "plausible detail invented by a neural network. They are not original images and must not "
        "be used alone to identify anyone; the LR crop is the evidence. The multi-frame reconstruction, "
        "where shown, uses no learned prior: it merges registered frames of the same track and is the image "
        "offered for comparison with the original.</p>",
        '<table class="meta">' + "".join(f"<tr><td>{k}</td><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>",
    ]
    for track in document.tracks:
        tid = track.track_id
        parts.append(f'<section id="track-{tid:04d}"><h2>Track {tid:04d}</h2>')
        parts.append(
            f"<p>first seen {html.escape(_when(track.first))}; last seen {html.escape(_when(track.last))}; "
            f"{track.faces_seen} detections, {track.faces_saved} faces saved</p>"
        )
        best = track.best
        lr_w, lr_h = best.crop_size
        shown = max(4 * lr_w, 128)
        parts.append('<div class="faces">')
        parts.append(_figure(best.lr, f"LR crop {lr_w}×{lr_h} (original pixels)", shown))
        parts.append(_figure(best.bicubic, "bicubic ×4", shown))
        fusion = track.fusion
        if fusion is not None and fusion.fused:
            parts.append(_figure(fusion.x4, f"fused ×4 — {fusion_label(fusion.frames)}; {COMPARE_LABEL}", shown, "fused"))
        if best.sr is not None:
            parts.append(_figure(best.sr, f"SR ×4 — {AI_LABEL}; {LEAD_LABEL}", shown, "ai"))
        if fusion is not None and fusion.fused and fusion.sr is not None:
            parts.append(_figure(fusion.sr, f"fused SR ×4 — {AI_LABEL}; {LEAD_LABEL}", shown, "ai"))
        parts.append("</div>")
        if best.not_enhanced is not None:
            parts.append(f'<p class="plain">not enhanced: {html.escape(best.not_enhanced)} (the crop is the evidence; --sr-max-face)</p>')
        parts.append(f"<p>best face: {html.escape(_when(best.seen))}, quality {best.quality:.3f}</p>")
        if fusion is not None and not fusion.fused:
            parts.append(f'<p class="nofuse">no multi-frame reconstruction: {html.escape(fusion.reason)}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: Path, document: TracksDocument) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(render_report(document), encoding="utf-8")
