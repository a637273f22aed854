"""Frames from video files, folders, still images and camera streams, with honest timestamps.

Decoding (PyAV) runs ahead in a daemon thread behind a bounded queue, so memory stays flat on long
footage and decoding overlaps the stages after it. Damaged files are read to the end with counted
warnings instead of failing; streams that drop are reopened with back-off. A stream's credentials
live only in `SourceInfo.url` and never reach a label, warning, exception or log line.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Literal
from urllib.parse import unquote

import av
import cv2
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from cctvsr.assets import sha256_file
from cctvsr.errors import InputError
from cctvsr.evidence import files_under, require_regular_file
from cctvsr.images import check_pixel_count, read_image
from cctvsr.prefetch import Prefetch

SourceKind = Literal["video", "image", "stream"]

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
SOCKET_TIMEOUT_S = 5.0  # a silent camera is declared dropped after this long without data
OPEN_TIMEOUT_S = 10.0  # connecting and reading the stream header
BACKOFF_CAP_S = 8.0  # longest wait between reconnect attempts
JOIN_TIMEOUT_S = 2.0  # how long closing the generator waits for the decode thread
DEFAULT_RAW_FPS = 25.0  # raw H.264/HEVC without timing information (the FFmpeg default too)
MAX_ERROR_WARNINGS = 5  # per source; later errors are counted and summarised in one line
MAX_ERRORS_IN_A_ROW = 20  # a file this broken is abandoned; a stream this broken is reopened
MAX_STREAM_JUMP_S = 60.0  # a larger jump in a stream's timestamps is a clock reset, not a gap

_AVFMT_NOTIMESTAMPS = 0x0080  # FFmpeg's flag for demuxers whose packets carry no timestamps
_DURATION_IN_HEADER = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"}  # not estimated from bitrate
_SECRET_QUERY = re.compile(
    r"([?&;][^=&#;]*(?:pass|pwd|secret|token|key|auth|sig|credential)[^=&#;]*=)[^&#;]*", re.IGNORECASE
)
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'\"<>@]*@")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


# ---------------------------------------------------------------------------------------------
# Public data


class _LazySha256:
    """Hashes a source's file on first read: listing a folder of large videos stays instant."""

    def __get__(self, obj: SourceInfo | None, owner: type | None = None) -> str | None:
        if obj is None:
            return None
        value = obj.__dict__.get("_sha256")
        if value is None and obj.kind != "stream" and obj.path is not None:
            try:
                value = sha256_file(obj.path)
            except OSError as exc:
                raise InputError(f"{obj.label}: cannot read ({exc.strerror or exc})") from None
            obj.__dict__["_sha256"] = value
        return value

    def __set__(self, obj: SourceInfo, value: str | None) -> None:
        obj.__dict__["_sha256"] = value


@dataclass(frozen=True)
class SourceInfo:
    """One input. `label` is what may be shown or written; `url` holds credentials and may not."""

    label: str  # the file path, or the URL with credentials removed
    kind: SourceKind
    path: Path | None  # video and image files
    url: str | None = field(default=None, repr=False)  # streams: the real URL, never printed
    sha256: str | None = field(default=None, repr=False, compare=False)  # files: computed on first read


SourceInfo.sha256 = _LazySha256()  # type: ignore[assignment,misc]  # after @dataclass, so __init__ keeps the field


@dataclass(frozen=True)
class FrameSampling:
    """Which decoded frames to keep. Applied in order: start/end window, then every, then fps."""

    every: int = 1  # keep every Nth decoded frame of the window
    fps: float | None = None  # and at most this many frames per second, by PTS
    start: float | None = None  # seconds on the Frame.pts clock
    end: float | None = None  # seconds on the Frame.pts clock, inclusive


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame, upright, square-pixelled and progressive, with where it sits in time."""

    index: int  # 0-based number of the decoded frame in its source, before sampling
    pts: float | None  # seconds since the start of the source (PTS × time_base − start time)
    wall_time: datetime | None  # tz-aware; files: creation_time + pts + offset; streams: receipt
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class DecodeStats:
    """Counts the reader keeps while it runs; the pipeline reads them for its summary."""

    frames_decoded: int = 0
    frames_yielded: int = 0
    errors_skipped: int = 0  # corrupt packets and decode/read errors skipped
    reconnects: int = 0  # stream reconnect attempts, successful or not
    frames_dropped: int = 0  # live frames let go because the consumer was behind (never in files)
    warnings: list[str] = field(default_factory=list)  # one line each, credentials redacted
    fps: float | None = None  # the frame rate the reader found (or assumed, for raw streams)


# ---------------------------------------------------------------------------------------------
# URLs and credentials


def redact_url(url: str) -> str:
    """The URL without user info (`***@`) and with password-like query values replaced by ***."""
    match = _SCHEME.match(url)
    if not match:
        return url
    scheme, rest = match.group(1), url[match.end() :]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:cut], rest[cut:]
    if "@" in head:  # the last '@' before the query: a password may itself contain '@' or '/'
        head = "***@" + head.rsplit("@", 1)[1]
    return f"{scheme}://{head}" + _SECRET_QUERY.sub(r"\1***", tail)


def _secrets(url: str) -> list[str]:
    """Strings from `url` that must never be shown: its user info and password-like query values."""
    found: list[str] = []
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:cut], rest[cut:]
    if "@" in head:
        userinfo = head.rsplit("@", 1)[0]
        password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
        found += [userinfo, unquote(userinfo), password, unquote(password)]
    for m in _SECRET_QUERY.finditer(tail):
        value = tail[m.end(1) : m.end()]
        found += [value, unquote(value)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def _scrub(text: str, url: str | None) -> str:
    """`text` with `url`, its secrets, and any other user info in a URL replaced by ***."""
    if url:
        text = text.replace(url, redact_url(url))
        for secret in _secrets(url):
            text = text.replace(secret, "***")
    return _USERINFO.sub(r"\1***@", text)


def _brief(exc: BaseException, url: str | None = None) -> str:
    """A one-line, credential-free description of a decode or network error."""
    message = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _scrub(" ".join(str(message).split()), url)


# ---------------------------------------------------------------------------------------------
# Listing and probing inputs


def _probe_file(path: Path) -> SourceKind | None:
    """What PyAV or OpenCV make of the bytes (never the extension): a video, an image, or neither."""
    try:
        with av.open(str(path)) as container:
            name = container.format.name
            decodable = any(stream.codec_context is not None for stream in container.streams.video)
            if decodable and name != "image2" and not name.endswith("_pipe"):
                return "video"
    except Exception:  # noqa: BLE001 - any failure to open means "not a video PyAV can read"
        pass
    try:
        return "image" if cv2.haveImageReader(str(path)) else None
    except cv2.error:
        return None


def list_sources(spec: str, *, skipped: list[str] | None = None) -> list[SourceInfo]:
    """The inputs named by `spec`: a stream URL, a video or image file, or a folder of them (sorted,
    recursive, hidden files ignored). Files in a folder that are neither are left out and, when
    `skipped` is given, named there."""
    scheme = _SCHEME.match(spec)
    if scheme:
        if scheme.group(1).lower() not in STREAM_SCHEMES:
            raise InputError(
                f"{redact_url(spec)}: unsupported URL scheme {scheme.group(1)}:// (use rtsp, rtsps, http or https)"
            )
        return [SourceInfo(label=redact_url(spec), kind="stream", path=None, url=spec)]
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder")
    if path.is_dir():
        sources: list[SourceInfo] = []
        others = 0
        for file in files_under(path, skipped):
            if not file.is_file():
                others += 1
                if skipped is not None:
                    skipped.append(f"{file}: not a regular file (FIFO, socket or device); skipped")
                continue
            kind = _probe_file(file)
            if kind is None:
                others += 1
                if skipped is not None:
                    skipped.append(f"{file}: not a video or image that can be read; skipped")
                continue
            sources.append(SourceInfo(label=str(file), kind=kind, path=file))
        if not sources:
            extra = f" ({others} other file{'s' if others != 1 else ''})" if others else ""
            raise InputError(f"{path}: no videos or images in this folder{extra}")
        return sources
    require_regular_file(path)
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read (permission denied)")
    kind = _probe_file(path)
    if kind is None:
        raise InputError(f"{path}: not a video or image that can be read")
    return [SourceInfo(label=str(path), kind=kind, path=path)]


def _stream_options(url: str) -> dict[str, str]:
    """FFmpeg options for a network source: TCP for RTSP, and a socket timeout in microseconds."""
    options = {"timeout": str(int(SOCKET_TIMEOUT_S * 1_000_000))}
    if url.lower().startswith(("rtsp://", "rtsps://")):
        options |= {"rtsp_transport": "tcp", "allowed_media_types": "video"}
    return options


def _connect(source: SourceInfo) -> InputContainer:
    """Open a file or stream; PyAV's own exceptions (which may quote the URL) propagate."""
    if source.kind == "stream":
        assert source.url is not None
        return av.open(source.url, options=_stream_options(source.url), timeout=(OPEN_TIMEOUT_S, SOCKET_TIMEOUT_S))
    return av.open(str(source.path))


def _open(source: SourceInfo) -> InputContainer:
    """Open a file or stream; a one-line, credential-free InputError when that is impossible."""
    try:
        return _connect(source)
    except (av.FFmpegError, OSError) as exc:
        what = "stream" if source.kind == "stream" else "video"
        raise InputError(f"{source.label}: cannot open {what} ({_brief(exc, source.url)})") from None


def _video_stream(container: InputContainer, label: str) -> VideoStream:
    stream = container.streams.best("video")
    if stream is None:
        raise InputError(f"{label}: no video stream")
    if stream.codec_context is None:  # e.g. a damaged index that names no codec
        raise InputError(f"{label}: no decodable video stream (unknown codec)")
    check_pixel_count(label, stream.codec_context.width or 0, stream.codec_context.height or 0)
    return stream


def _nominal_fps(stream: VideoStream, raw: bool) -> float | None:
    """The frame rate the source states: for raw streams the codec header's (the demuxer's is a guess)."""
    rates = (stream.codec_context.framerate,) if raw else (stream.average_rate, stream.guessed_rate)
    for rate in rates:
        if rate and 0 < float(rate) < 1000:
            return float(rate)
    return None


def _has_no_timestamps(container: InputContainer) -> bool:
    return bool(container.format.flags & _AVFMT_NOTIMESTAMPS)


def probe_fps(source: SourceInfo) -> float | None:
    """The source's average frame rate where known (raw streams: as stated in the codec header, or
    the 25 fps that `read_frames` then assumes); None for images and unreadable sources."""
    if source.kind == "image":
        return None
    try:
        with _open(source) as container:
            raw = _has_no_timestamps(container)
            fps = _nominal_fps(_video_stream(container, source.label), raw)
            return DEFAULT_RAW_FPS if fps is None and raw else fps
    except InputError:
        return None


# ---------------------------------------------------------------------------------------------
# Turning decoded frames into Frames


@dataclass(frozen=True)
class _Meta:
    """What is known about a decoded frame when it leaves the decoder (before deinterlacing)."""

    index: int
    pts: float | None
    wall_time: datetime | None
    rotation: int  # counter-clockwise degrees to turn the picture upright
    sar: Fraction | None


def _to_rgb(frame: av.VideoFrame, meta: _Meta) -> np.ndarray:
    """(H, W, 3) uint8 RGB, square pixels (width resized by the SAR), turned upright."""
    width = frame.width
    if meta.sar is not None and meta.sar != 1 and 0.1 <= meta.sar <= 10:
        width = max(1, round(frame.width * meta.sar))
    if width == frame.width:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        interpolation = "BICUBIC" if width > frame.width else "AREA"
        rgb = frame.to_ndarray(format="rgb24", width=width, height=frame.height, interpolation=interpolation)
    turns = round(meta.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class _Deinterlacer:
    """bwdif (FFmpeg's motion-adaptive deinterlacer) for frames flagged interlaced; progressive
    frames pass through. It returns each frame one frame late, so frames travel with their _Meta."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[int, int, str] | None = None
        self._waiting: deque[_Meta] = deque()
        self._unavailable = False  # the filter would not build: frames pass as they are

    def push(self, meta: _Meta, frame: av.VideoFrame) -> list[tuple[_Meta, av.VideoFrame]]:
        shape = (frame.width, frame.height, frame.format.name)
        out: list[tuple[_Meta, av.VideoFrame]] = []
        if self._graph is not None and shape != self._shape:
            out += self.flush()
        if self._graph is None:
            if not frame.interlaced_frame or self._unavailable:
                return out + [(meta, frame)]
            try:
                self._build(frame)
            except (av.FFmpegError, ValueError) as exc:
                self._unavailable = True
                self._warn(f"interlaced video left as it is: deinterlacer unavailable ({_brief(exc)})")
                return out + [(meta, frame)]
            self._shape = shape
        assert self._graph is not None
        self._waiting.append(meta)
        self._graph.vpush(frame)
        return out + self._pull()

    def flush(self) -> list[tuple[_Meta, av.VideoFrame]]:
        if self._graph is None:
            return []
        self._graph.vpush(None)
        out = self._pull()
        self._graph, self._shape = None, None
        self._waiting.clear()
        return out

    def _build(self, frame: av.VideoFrame) -> None:
        graph = av.filter.Graph()
        source = graph.add_buffer(template=frame, time_base=frame.time_base or Fraction(1, 90000))
        bwdif = graph.add("bwdif", "mode=send_frame:parity=auto:deint=interlaced")
        sink = graph.add("buffersink")
        source.link_to(bwdif)
        bwdif.link_to(sink)
        graph.configure()
        self._graph = graph

    def _pull(self) -> list[tuple[_Meta, av.VideoFrame]]:
        assert self._graph is not None
        out = []
        while self._waiting:
            try:
                frame = self._graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                break
            out.append((self._waiting.popleft(), frame))
        return out


class _Sampler:
    """FrameSampling as a running decision over frames in PTS order."""

    EPS = 1e-3  # timestamps are rounded to their time base (1 ms in Matroska)

    def __init__(self, sampling: FrameSampling) -> None:
        self.s = sampling
        self._in_window = 0
        self._next_due: float | None = None

    def before_start(self, pts: float | None) -> bool:
        return self.s.start is not None and pts is not None and pts < self.s.start - self.EPS

    def after_end(self, pts: float | None) -> bool:
        return self.s.end is not None and pts is not None and pts > self.s.end + self.EPS

    def keep(self, pts: float | None) -> bool:
        n, self._in_window = self._in_window, self._in_window + 1
        if n % self.s.every:
            return False
        if self.s.fps is None or pts is None:
            return True
        period = 1.0 / self.s.fps
        if self._next_due is not None and pts < self._next_due - self.EPS:
            return False
        due = self._next_due
        self._next_due = pts + period if due is None or pts - due >= period else due + period
        return True


def _check_sampling(sampling: FrameSampling) -> None:
    if not isinstance(sampling.every, int) or sampling.every < 1:
        raise InputError(f"frame sampling: every must be a whole number of at least 1 (got {sampling.every})")
    if sampling.fps is not None and not sampling.fps > 0:
        raise InputError(f"frame sampling: fps must be above 0 (got {sampling.fps})")
    for name in ("start", "end"):
        value = getattr(sampling, name)
        if value is not None and not value >= 0:
            raise InputError(f"frame sampling: {name} must be 0 s or later (got {value})")
    if sampling.start is not None and sampling.end is not None and sampling.end < sampling.start:
        raise InputError(f"frame sampling: end ({sampling.end} s) is before start ({sampling.start} s)")


def _creation_time(container: InputContainer, stream: VideoStream) -> datetime | None:
    """The container's creation_time (UTC unless it says otherwise); None when absent or implausible."""
    text = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when if when.year >= 1971 else None  # 1904/1970 are what writers put when they know nothing


# ---------------------------------------------------------------------------------------------
# Decoding (runs in the producer thread)


class _Stop(Exception):
    """The consumer has gone, or `stop` was set."""


class _PastEnd(Exception):
    """A frame later than sampling.end was decoded: nothing more is wanted."""


class _Dropped(Exception):
    """A stream connection failed mid-way; the message is already credential-free."""


class _Clock:
    """Frame.pts and wall_time from raw frame times. Files: relative to the container's start time,
    derived from the frame rate where the container has none. Streams: seconds since the session's
    first frame, each connection re-based on the monotonic clock, so pts keeps rising across drops."""

    def __init__(self, *, live: bool, time_offset: float) -> None:
        self.live = live
        self.offset = time_offset
        self.origin = 0.0
        self.fps = DEFAULT_RAW_FPS
        self.no_timestamps = False  # raw streams: every pts is index / fps
        self.creation: datetime | None = None
        self.last: float | None = None
        self._session_t0: float | None = None
        self._conn_base: tuple[float, float] | None = None  # (raw time, pts) of a connection's first frame

    def new_connection(self) -> None:
        self._conn_base = None

    def stamp(self, raw: float | None, index: int) -> tuple[float | None, datetime | None]:
        if raw is not None and not math.isfinite(raw):
            raw = None
        if self.live:
            now = time.monotonic()
            if self._session_t0 is None:
                self._session_t0 = now
            elapsed = now - self._session_t0
            # never earlier than one frame after the last one, even when a camera sends a burst
            floor = 0.0 if self.last is None else self.last + 1.0 / self.fps
            if raw is None:
                pts = max(elapsed, floor)
            else:
                if self._conn_base is not None:
                    pts = self._conn_base[1] + (raw - self._conn_base[0])
                    if not self.last - 1e-6 < pts < self.last + MAX_STREAM_JUMP_S:
                        self._conn_base = None  # the camera's clock jumped: re-base as on a reconnect
                if self._conn_base is None:
                    self._conn_base = (raw, max(elapsed, floor))
                pts = self._conn_base[1] + (raw - self._conn_base[0])
            self.last = pts
            return pts, datetime.now(timezone.utc)
        if raw is not None:
            pts = raw - self.origin
        else:
            pts = index / self.fps if self.no_timestamps or self.last is None else self.last + 1.0 / self.fps
        self.last = pts
        wall = self.creation + timedelta(seconds=pts + self.offset) if self.creation is not None else None
        return pts, wall


class _Reader:
    """Decodes one source into the queue: files once, streams connection after connection."""

    def __init__(
        self,
        source: SourceInfo,
        sampling: FrameSampling,
        stats: DecodeStats,
        emit: Callable[[Frame, bool], bool | None],
        time_offset: float,
    ) -> None:
        self.source = source
        self.label = source.label
        self.stats = stats
        self.emit = emit  # (frame, wait) -> True: queued, None: queue full (only without wait), False: halted
        self.realtime = False  # a live stream: frames the consumer cannot take are let go, not waited for
        self.sampler = _Sampler(sampling)
        # files reach `start` by counting packets; a stream's packet times are on another clock
        self.skip_to = sampling.start if sampling.start and source.kind != "stream" else None
        self.clock = _Clock(live=source.kind == "stream", time_offset=time_offset)
        self.index = 0
        self.errors = 0  # errors of this source, for the "and N more" summary

    def warn(self, message: str) -> None:
        self.stats.warnings.append(f"{self.label}: {_scrub(message, self.source.url)}")

    def count_error(self, what: str, exc: BaseException | None = None) -> None:
        """Count one damaged packet or failed read; the first few also become warnings."""
        self.stats.errors_skipped += 1
        self.errors += 1
        if self.errors <= MAX_ERROR_WARNINGS:
            where = f"after {self.clock.last:.2f} s" if self.clock.last is not None else "before the first frame"
            reason = f" ({_brief(exc, self.source.url)})" if exc is not None else ""
            self.warn(f"{what} {where}{reason}")

    def finish_errors(self) -> None:
        if self.errors > MAX_ERROR_WARNINGS:
            self.warn(f"{self.errors} corrupt packets or decode errors skipped in all")

    # -- one open container --------------------------------------------------------------------

    def packets(self, container: InputContainer, stream: VideoStream, *, live: bool) -> Iterator[av.Packet]:
        """Demuxed packets; read errors are skipped in files (the demuxer resyncs) and end a stream."""
        demux = container.demux(stream)
        in_a_row = 0
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as exc:
                if live:
                    raise _Dropped(_brief(exc, self.source.url)) from None
                in_a_row += 1
                self.count_error("skipped unreadable data", exc)
                if in_a_row >= MAX_ERRORS_IN_A_ROW:
                    self.warn(f"gave up reading after {in_a_row} errors in a row; kept what was decoded")
                    return
                demux = container.demux(stream)
                continue
            in_a_row = 0
            if packet.is_corrupt:
                self.count_error("corrupt packet, decoded as far as it goes,")
            yield packet

    def until_start(self, packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
        """Reach sampling.start without decoding: packets before the last keyframe at or before it
        are only counted (so Frame.index stays exact for closed-GOP video), then decoding begins."""
        if self.skip_to is None:
            yield from packets
            return
        gop: list[av.Packet] = []
        for packet in packets:
            if packet.is_keyframe:
                self.index += sum(1 for p in gop if p.size)
                gop = []
            gop.append(packet)
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.time_base is None:
                break  # no timestamps to go by: decode from here
            if float(stamp * packet.time_base) - self.clock.origin >= self.skip_to:
                break
        yield from gop
        yield from packets

    def decode(self, container: InputContainer, *, live: bool) -> None:
        """Decode every frame of one open container into the queue. Raises _Stop, _PastEnd, _Dropped."""
        stream = _video_stream(container, self.label)
        codec = stream.codec_context
        codec.thread_type = "AUTO"
        deinterlacer = _Deinterlacer(self.warn)
        decode_errors_in_a_row = 0

        def handle(frames: list[av.VideoFrame]) -> None:
            for frame in frames:
                self.stats.frames_decoded += 1
                pts, wall = self.clock.stamp(frame.time, self.index)
                sar = stream.sample_aspect_ratio or codec.sample_aspect_ratio
                meta = _Meta(self.index, pts, wall, frame.rotation, sar)
                self.index += 1
                for meta_out, frame_out in deinterlacer.push(meta, frame):
                    self.offer(meta_out, frame_out)

        try:
            for packet in self.until_start(self.packets(container, stream, live=live)):
                try:
                    frames = packet.decode()
                except (av.FFmpegError, OSError) as exc:
                    self.count_error("skipped a packet that would not decode", exc)
                    decode_errors_in_a_row += 1
                    if live and decode_errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
                        raise _Dropped(f"{decode_errors_in_a_row} decode errors in a row") from None
                    continue
                decode_errors_in_a_row = 0
                handle(frames)
        except _Dropped:
            handle(self._drain(codec, stream.time_base))  # frames the decoder still held arrived before the drop
            for meta_out, frame_out in deinterlacer.flush():
                self.offer(meta_out, frame_out)
            raise
        for meta_out, frame_out in deinterlacer.flush():
            self.offer(meta_out, frame_out)

    @staticmethod
    def _drain(codec: av.codec.context.CodecContext, time_base: Fraction | None) -> list[av.VideoFrame]:
        try:
            frames = list(codec.decode(None))
        except (av.FFmpegError, OSError):
            return []
        for frame in frames:  # frames flushed without a packet carry no time base of their own
            frame.time_base = time_base
        return frames

    def offer(self, meta: _Meta, frame: av.VideoFrame) -> None:
        if self.sampler.after_end(meta.pts):
            raise _PastEnd
        if self.sampler.before_start(meta.pts) or not self.sampler.keep(meta.pts):
            return
        queued = self.emit(Frame(meta.index, meta.pts, meta.wall_time, _to_rgb(frame, meta)), not self.realtime)
        if queued is False:
            raise _Stop
        if queued is None:
            self.stats.frames_dropped += 1

    # -- whole sources -------------------------------------------------------------------------

    def read_file(self) -> None:
        container = _open(self.source)
        with container:
            stream = _video_stream(container, self.label)
            raw = _has_no_timestamps(container)
            fps = _nominal_fps(stream, raw)
            self.stats.fps = fps if fps is not None or not raw else DEFAULT_RAW_FPS
            self.clock.origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            self.clock.creation = _creation_time(container, stream)
            if raw:
                self.clock.fps = fps or DEFAULT_RAW_FPS
                self.clock.no_timestamps = True
                self.skip_to = None  # no timestamps to skip by
                stated = f"{fps:g} fps stated in the stream" if fps else f"an assumed {DEFAULT_RAW_FPS:g} fps"
                self.warn(f"raw {container.format.name} stream without timestamps: times derived from {stated}")
            try:
                self.decode(container, live=False)
            except _PastEnd:
                return
            finally:
                self.finish_errors()
            self._check_complete(container, stream)

    def _check_complete(self, container: InputContainer, stream: VideoStream) -> None:
        """Warn when a file ended before what its header promised (a cut-off recording)."""
        got = self.index
        if stream.frames and got < stream.frames * 0.98 - 1:
            self.warn(f"ended after {got} of {stream.frames} frames (file truncated or damaged)")
        elif container.format.name == "gif" and not _ends_with_gif_trailer(self.source.path):
            self.warn(f"ended after {got} frames without the GIF trailer (file truncated: later frames are lost)")
        elif (
            not stream.frames
            and container.format.name in _DURATION_IN_HEADER
            and container.duration
            and self.clock.last is not None
        ):
            stated = container.duration / 1_000_000
            if self.clock.last < stated * 0.98 - 1.0:
                self.warn(f"ended at {self.clock.last:.2f} s of {stated:.2f} s (file truncated or damaged)")

    def read_stream(self, reconnect: int, backoff: float, halted: Callable[[float], bool]) -> None:
        try:
            self._read_stream(reconnect, backoff, halted)
        finally:
            if self.stats.frames_dropped:
                self.warn(f"{self.stats.frames_dropped} frames let go: processing fell behind the live stream")

    def _read_stream(self, reconnect: int, backoff: float, halted: Callable[[float], bool]) -> None:
        container = _open(self.source)  # the first connection must work: a wrong URL is an InputError
        failures = 0  # reconnect attempts since frames last arrived
        while True:
            frames_before = self.stats.frames_decoded
            self.clock.new_connection()
            try:
                with container:
                    if self.stats.fps is None:
                        self.stats.fps = _nominal_fps(_video_stream(container, self.label), raw=False)
                        self.clock.fps = self.stats.fps or DEFAULT_RAW_FPS
                    # RTSP is live; over HTTP, a source without a duration is (a finite file has one)
                    self.realtime = (self.source.url or "").lower().startswith("rtsp") or not container.duration
                    self.decode(container, live=True)
                return  # a clean end of stream: the server ended it
            except _PastEnd:
                return
            except _Dropped as drop:
                reason = str(drop)
            finally:
                self.finish_errors()
                self.errors = 0
            if self.stats.frames_decoded > frames_before:
                failures = 0
            at = f"{self.clock.last:.2f} s" if self.clock.last is not None else "the start"
            self.warn(f"stream dropped at {at} ({reason})")
            while True:
                if failures >= reconnect:
                    attempts = f"{failures} reconnect attempt{'s' * (failures != 1)}"
                    self.warn(f"stream did not come back after {attempts}; stopped")
                    return
                if halted(min(backoff * 2**failures, BACKOFF_CAP_S)):
                    raise _Stop
                failures += 1
                self.stats.reconnects += 1
                try:
                    container = _connect(self.source)
                    break
                except (av.FFmpegError, OSError) as exc:
                    self.warn(f"reconnect attempt {failures} of {reconnect} failed ({_brief(exc, self.source.url)})")


# ---------------------------------------------------------------------------------------------
# The consumer side


def _image_frames(source: SourceInfo, stats: DecodeStats, stop: threading.Event | None) -> Iterator[Frame]:
    assert source.path is not None
    decoded = read_image(source.path)
    stats.frames_decoded += 1
    if stop is not None and stop.is_set():
        return
    stats.frames_yielded += 1
    yield Frame(index=0, pts=None, wall_time=None, image=decoded.rgb)


def _ends_with_gif_trailer(path: Path | None) -> bool:
    """A whole GIF ends with the 0x3B trailer byte; a cut-off one (a copy stopped early) does not."""
    if path is None:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\x3b"
    except OSError:
        return True  # unreadable here: the decoder has already said what it could


def read_frames(
    source: SourceInfo,
    sampling: FrameSampling = FrameSampling(),
    *,
    stats: DecodeStats,
    reconnect: int = 3,
    time_offset: float = 0.0,
    queue_size: int = 8,
    stop: threading.Event | None = None,
    backoff: float = 0.5,
) -> Iterator[Frame]:
    """Frames of `source`, decoded ahead in a daemon thread (at most `queue_size` waiting).

    Closing the generator or setting `stop` ends the thread. Input that cannot be opened raises
    InputError; damage later in a file is skipped with counted warnings. A stream that drops (a
    read error, a reset, or SOCKET_TIMEOUT_S of silence; a clean end of stream is an end) is
    reopened after `backoff`, 2·`backoff`, 4·`backoff` … (capped at BACKOFF_CAP_S) seconds, up to
    `reconnect` attempts in a row without a frame, then the generator ends with a warning. A live
    stream is read at its own pace: frames that find the queue full are let go and counted
    (`frames_dropped`), so the camera connection never stalls. `time_offset` (seconds) corrects a
    camera clock in files' wall times; streams are stamped with the time of receipt.
    """
    _check_sampling(sampling)
    if queue_size < 1:
        raise ValueError("queue_size must be at least 1")
    if source.kind == "image":
        yield from _image_frames(source, stats, stop)
        return
    if source.kind == "stream" and time_offset:
        stats.warnings.append(f"{source.label}: time offset ignored: a stream's wall time is its time of receipt")

    def produce(feed: Prefetch[Frame]) -> None:
        reader = _Reader(source, sampling, stats, feed.put, time_offset)
        try:
            if source.kind == "stream":
                reader.read_stream(reconnect, backoff, feed.halted)
            else:
                reader.read_file()
            return
        except _Stop:
            return
        except (av.FFmpegError, OSError) as exc:
            failure = InputError(f"{source.label}: {_brief(exc, source.url)}")
        raise failure  # outside the except clause: no chained exception carries the stream's URL

    name = f"cctvsr-decode:{source.label}"
    with Prefetch(produce, size=queue_size, name=name, stop=stop, join_timeout=JOIN_TIMEOUT_S) as frames:
        for frame in frames:
            stats.frames_yielded += 1
            yield frame
