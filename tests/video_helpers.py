"""Clips made on the fly from a real photo (skimage's astronaut, panned), and a local HTTP "camera"."""

from __future__ import annotations

import http.server
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import skimage.data

ASTRONAUT = skimage.data.astronaut()  # (512, 512, 3) uint8 RGB


def pan(n: int, width: int = 160, height: int = 120, step: int = 4, y: int = 40) -> list[np.ndarray]:
    """`n` real frames: a window sliding `step` px right per frame across the photo."""
    assert 60 + (n - 1) * step + width <= ASTRONAUT.shape[1], "pan runs off the photo"
    return [np.ascontiguousarray(ASTRONAUT[y : y + height, 60 + i * step : 60 + i * step + width]) for i in range(n)]


def write_clip(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    fps: int = 30,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    container_format: str | None = None,
    container_options: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
    sar: Fraction | None = None,
    display_matrix: Sequence[int] | None = None,
) -> Path:
    """Encode RGB frames with libx264 (yuv420p). `pts` in `time_base` units gives variable frame rate."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as out:
        out.metadata.update(metadata or {})
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12", "g": "15"} | (codec_options or {})
        if time_base is not None:
            stream.time_base = time_base
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if display_matrix is not None:
            stream.set_display_matrix(display_matrix)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def remux(src: Path, dst: Path, container_format: str | None = None, **options: object) -> Path:
    """Copy the video packets of `src` into another container (or layout) without re-encoding."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=container_format, **options) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return dst


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def reset(connection: socket.socket) -> None:
    """Close with a TCP RST, as a camera that loses power or network does."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


class FlakyCamera:
    """An MPEG-TS "camera" on 127.0.0.1: the first request promises every byte but the connection
    closes after `cut` (or, with `stall=True`, goes silent); later requests get the rest of the bytes
    (`then="resume"`, as a live camera continues), a reset at once (`then="gone"`), or a 404 once
    the rest has been served."""

    def __init__(self, data: bytes, cut: int, then: str = "resume", stall: bool = False) -> None:
        self.data, self.cut, self.then, self.stall = data, cut, then, stall
        self.requests = 0
        self.closing = threading.Event()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                camera.requests += 1
                n = camera.requests
                if n > 1 and camera.then == "gone":
                    self.close_connection = True
                    reset(self.connection)
                    return
                if n > 2:
                    self.send_error(404)
                    return
                body = camera.data if n == 1 else camera.data[camera.cut :]
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if n == 1:
                    self.wfile.write(body[: camera.cut])
                    self.wfile.flush()
                    if camera.stall:
                        camera.closing.wait(30)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_WR)  # the client still reads every byte sent
                else:
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]


@contextmanager
def serving(camera: FlakyCamera) -> Iterator[FlakyCamera]:
    thread = threading.Thread(target=camera.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield camera
    finally:
        camera.closing.set()
        camera.server.shutdown()
        camera.server.server_close()
        thread.join(5)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
