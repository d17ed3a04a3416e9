"""Video input and output for ``yoloslim predict`` (PyAV, the optional ``[video]`` extra).

Example:
    >>> with VideoReader("clip.mp4") as reader:
    ...     for frame in reader:
    ...         height, width, _ = frame.shape  # HxWx3 RGB uint8
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from yoloslim.errors import ConfigError, DataError
from yoloslim.fileio import apply_umask, naming, temp_beside

__all__ = ["VIDEO_SUFFIXES", "VideoReader", "VideoWriter", "is_video", "uneven", "video_comment"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# FFmpeg's muxer of each suffix (a temp file's name says none)
_MUXERS = {".mp4": "mp4", ".avi": "avi", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
           ".m4v": "ipod"}  # fmt: skip
# the encoders tried in turn when none is named: WebM holds only VP8/VP9/AV1
_CODECS = {".webm": ("libvpx-vp9", "libvpx", "libsvtav1")}
_DEFAULT_CODECS = ("libx264", "mpeg4")


def is_video(path: str | Path) -> bool:
    """Whether ``path`` is read as a video: by its suffix (a folder named ``x.mp4`` is not)."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir()


def _av():
    try:
        import av
    except ImportError as e:
        raise ConfigError(
            "video input needs PyAV: pip install 'yoloslim[video]' (or: pip install av)"
        ) from e
    return av


def upright(frame: np.ndarray, rotation: float) -> np.ndarray:
    """``frame`` as a player shows it: turned by its display rotation (degrees
    counterclockwise, as FFmpeg's display matrix gives it; a phone's portrait video is stored
    landscape with -90), to the nearest quarter turn."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


class VideoReader:
    """Decode a video file to RGB frames, upright (its display rotation applied, as a player
    shows it); ``len()`` is the container's frame count (0 if unknown)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: video does not exist")
        av = _av()
        try:
            self._container = av.open(str(self.path))
        except av.error.FFmpegError as e:
            raise DataError(f"{self.path}: cannot open as a video ({e})") from e
        try:
            self._stream = self._container.streams.video[0]
        except IndexError as e:
            self._container.close()
            raise DataError(f"{self.path}: cannot open as a video (no video stream)") from e
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(25)
        self.fps = Fraction(rate)
        self.frames = int(self._stream.frames or 0)
        # where the video ends, in seconds, by the container (None if it cannot say): a file
        # without a frame count (Matroska, WebM) read short is found by its last frame's
        # time; and a frame count past the frames there are is an edit list's (a clip cut
        # without re-encoding: its skipped frames are counted, not shown; audit50 video F1)
        # when the last frame reaches the end. The video track's own duration (Matroska's
        # DURATION tag, which FFmpeg writes), else the container's for a file of one stream
        # (an audio track longer than the video is in the container's), is taken as the end
        # (Matroska's counts from 0 when the first frame starts later; a format whose
        # duration starts at the first frame then warns later, never wrongly). A cut file with
        # an audio track, most camera files, was not warned about (audit50 video F2)
        c, s = self._container, self._stream
        self._end = _track_seconds(s.metadata.get("DURATION"))
        if self._end is None and c.duration and len(c.streams) == 1:
            self._end = c.duration / 1_000_000
        # an MP4/MOV track's own duration, edit lists applied (an audio track's is not in
        # it; review2 F3): where a trimmed clip's frames end. Only there: a cut AVI's
        # duration is guessed from the bytes left (review2 F2: it hid the cut)
        self._edited_end = None
        if "mp4" in c.format.name.split(",") and s.duration and s.time_base:
            self._edited_end = float(s.duration * s.time_base)
        elif c.format.name == "avi" and self.frames:  # its header's count, empty chunks (frames
            self._edited_end = self.frames / float(self.fps)  # dropped) counted: not a cut
        # AVI keeps no presentation times: FFmpeg times its frames by decode order, which
        # with B-frames went 0.1, 0.3, 0.2 (audit50 video F4), and put the gap of a frame
        # dropped (an empty chunk) one frame early in H.264 (audit51 vreview F2). A chunk's
        # place in the file is a frame's slot, and a decoder gives frame k only after k + 1
        # chunks: frame k is timed by the k-th earliest chunk read so far, none held back,
        # however deep the reordering (x264's veryslow: 7 frames; vreview F1). Limit: with
        # B-frames, the AVI muxer puts a gap among the frames in decode order, so frames
        # next to it are off, by up to the gap's length (review F3). MPEG-4 part 2 times its
        # own frames (its headers hold their times, gaps and all): its frames are held a few
        # at a time and given FFmpeg's times in increasing order, from the first frame's (one
        # frame late with B-frames), so one dropped before the first frame is lost there
        avi = c.format.name == "avi"
        self._by_chunk = avi and s.codec_context.name != "mpeg4"
        self._reorder = 4 if avi and not self._by_chunk else 0
        self._first: float | None = None
        self.time: float | None = None  # the last frame's time in seconds (None: unknown)

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[np.ndarray]:
        av = _av()
        decoded, last = 0, None
        held: collections.deque = collections.deque()
        stamps: list[float] = []
        try:
            for frame in self._decoded(stamps):
                decoded += 1
                # an older PyAV has no VideoFrame.rotation: frames as stored
                held.append(
                    upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0))
                )
                if not self._by_chunk and frame.time is not None:
                    heapq.heappush(stamps, frame.time)
                if len(held) > self._reorder:
                    yield self._timed(held, stamps)
                    last = self.time if self.time is not None else last
        except av.error.FFmpegError as e:
            if not decoded:
                raise DataError(f"{self.path}: video decoding failed ({e})") from e
            while held:
                yield self._timed(held, stamps)
            # a truncated file fails in the decoder, not at a clean end: the frames so far
            # are kept, as for a video that ends early (it was an error that dropped them)
            log.warning(
                "%s: decoding stopped after %d%s frames (%s); the rest of the video is "
                "skipped (a truncated file?)",
                self.path,
                decoded,
                f" of the {self.frames}" if self.frames else "",
                e,
            )
            return
        if not decoded:  # a file cut short before its first frame ends without an error
            raise DataError(f"{self.path}: no frame could be decoded (a truncated file?)")
        while held:
            yield self._timed(held, stamps)
            last = self.time if self.time is not None else last
        period = 1 / float(self.fps)
        if last is not None and self._first is not None:  # an MPEG-4 AVI's, timed from 0:
            last += self._first  # the end is the header's (frames dropped first; vreview F3)
        short = (
            last is not None and self._end is not None and last + period < self._end - 2 * period
        )
        edited = self._edited_end  # a trimmed clip's skipped frames, an AVI's dropped ones
        reached = last is not None and edited is not None and last + period >= edited - 2 * period
        if decoded < self.frames and not reached:
            log.warning(
                "%s: the video ended after %d of the %d frames its container announces "
                "(a truncated file?)",
                self.path,
                decoded,
                self.frames,
            )
        elif not self.frames and short:  # frames missing at the end
            log.warning(
                "%s: the video ended at %.2f s of the %.2f s its container announces, "
                "after %d frames (a truncated file?)",
                self.path,
                last + period,
                self._end,
                decoded,
            )

    def _decoded(self, stamps: list[float]) -> Iterator:
        """The stream's frames as decoded; an AVI's chunk times pushed on ``stamps`` as read
        (an empty chunk, a dropped frame, has none: its slot stays a gap). Those of the chunks
        before the first keyframe, which the decoder shows no frame of (a file cut at a
        P-frame), go at the keyframe (audit51 review F4: every frame was timed early)."""
        base = self._stream.time_base
        keyed = False
        for packet in self._container.demux(self._stream):
            if self._by_chunk and packet.size and packet.dts is not None and base:
                if packet.is_keyframe and not keyed:
                    keyed = True
                    stamps.clear()
                heapq.heappush(stamps, float(packet.dts * base))
            yield from packet.decode()

    def _timed(self, held: collections.deque, stamps: list[float]) -> np.ndarray:
        """The first held frame, ``self.time`` set to the earliest time not yet given (as
        decoded, where no frame is held back), from the first frame's on an MPEG-4 AVI."""
        t = heapq.heappop(stamps) if stamps else None
        if self._reorder and t is not None:
            self._first = t if self._first is None else self._first
            t -= self._first
        self.time = t
        return held.popleft()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _track_seconds(text) -> float | None:
    """Matroska's ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``) in seconds; None if not one."""
    parts = str(text or "").split(":")
    try:
        h, m, sec = (float(p) for p in parts) if len(parts) == 3 else (None, None, None)
    except ValueError:
        return None
    return None if h is None else 3600 * h + 60 * m + sec


def video_comment(path: str | Path) -> str | None:
    """The comment tag of a video file's container; None when it has none or is no video
    PyAV can open."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            return container.metadata.get("comment")
    except Exception:  # noqa: BLE001 - not a video at all: no comment
        return None


class VideoWriter:
    """Encode RGB frames to a video; the file appears under its name only once closed.

    Frames are written to a temp file of its own beside it (``.NAME.XXXXXXXX.tmp``, as
    :func:`yoloslim.fileio.atomic_file` names one: a killed run's is found by
    :func:`~yoloslim.fileio.remove_stale_temps`) and renamed on :meth:`close`, so an
    interrupted run never leaves a truncated file under the final name. (It was
    ``NAME.partial.ext``: a user's file of that name was overwritten, and a name near the
    255-byte limit grew past it.)
    """

    def __init__(
        self,
        path: str | Path,
        fps: Fraction | float = 25,
        codec: str | None = None,
        comment: str | None = None,
    ):
        """``codec``: an FFmpeg encoder; by default H.264 (MPEG-4 part 2 where PyAV lacks
        libx264), VP9 (VP8, AV1) for ``.webm``."""
        av = _av()
        self.path = Path(path)
        fd, tmp = temp_beside(self.path)
        os.close(fd)
        self._tmp = Path(tmp)
        try:  # the container's format by the final name's suffix (the temp's is .tmp)
            self._container = av.open(
                str(self._tmp), mode="w", format=_MUXERS.get(self.path.suffix.lower())
            )
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        if comment is not None:  # the container's comment tag (predict marks its own so)
            self._container.metadata["comment"] = comment
        if codec is None:
            tried = _CODECS.get(self.path.suffix.lower(), _DEFAULT_CODECS)
            codec = next((c for c in tried if c in av.codecs_available), tried[-1])
        try:
            rate = frame_rate(fps)
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.pix_fmt = "yuv420p"
        except Exception:  # noqa: BLE001 - the container is ours to close, the file ours to drop
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._opened = False
        self._cut = False

    def write(self, frame: np.ndarray) -> None:
        av = _av()
        if not self._opened:
            h, w = frame.shape[:2]  # yuv420p wants even sides: an odd one gains a pixel
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._opened = True
        h, w = frame.shape[:2]
        H, W = self._stream.height, self._stream.width  # noqa: N806
        if (h > H or w > W) and not self._cut:  # a stream whose frame size changed: said
            # once (its boxes beyond the first frame's size were left out without a word)
            self._cut = True
            log.warning(
                "%s: a frame of %dx%d is cut to the drawn video's %dx%d (the video's frame "
                "size changed); detections.json has its whole boxes",
                self.path,
                w,
                h,
                W,
                H,
            )
        if (h, w) != (H, W):  # the last row / column repeated (was cut, with boxes in it)
            frame = np.pad(frame[:H, :W], ((0, max(0, H - h)), (0, max(0, W - w)), (0, 0)), "edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        with naming(self.path, self._tmp):  # a full disk names the video, not a file of predict's
            for packet in self._stream.encode(vf):
                self._container.mux(packet)

    def close(self) -> None:
        if not self._opened:  # no frame: no video (a 0-byte file under the final name)
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            return
        with naming(self.path, self._tmp):
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        apply_umask(self._tmp)  # mkstemp made it 0600
        self._tmp.replace(self.path)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self._tmp.unlink(missing_ok=True)
                raise
        else:
            try:
                self._container.close()  # may fail as the write did (a full disk)
            except Exception:  # noqa: BLE001 - the error that ended the block is the one said
                log.debug("%s: closing after an error failed too", self._tmp, exc_info=True)
            finally:
                self._tmp.unlink(missing_ok=True)


def frame_rate(fps: Fraction | float) -> Fraction:
    """``fps`` as a fraction whose numerator and denominator are at most 65535 (for a rate
    from 1/65535 to 65535 fps), as MPEG-4 part 2 (the encoder where PyAV has no libx264)
    needs (1234567/49383 failed to open: audit45 review M2); NTSC's 30000/1001 is kept (a
    denominator of 1000 made it 19001/634)."""
    f = Fraction(fps)
    return f.limit_denominator(max(1, min(65535, int(65535 / f)))) if f > 0 else f


def uneven(times: list[float | None], fps: Fraction | float) -> bool:
    """Whether frames at ``times`` (seconds) come at a variable rate: an interval off the
    average ``fps``'s period by over half of it. A video written at ``fps`` shows them at
    other times than the source (audit45 predict F3: 0.0-2.3 s drawn as 0.0-0.7 s)."""
    known = [t for t in times if t is not None]
    if len(known) < 3 or not fps:
        return False
    period = 1 / float(fps)
    return any(abs((b - a) - period) > period / 2 for a, b in itertools.pairwise(known))
