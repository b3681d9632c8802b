"""Which telemetry gives each frame its position, chosen once per run from the source:

- `--telemetry URI` (live MAVLink) for any source, when given;
- else a video file with a DJI .SRT sidecar (same stem): the cue at the frame's video time;
- else photos: their own EXIF GPS (edge/record/positions.py);
- else none: the frames of a camera with no telemetry simply have no position.

The locator runs on the capture thread right after each read, so a live fix is matched to the
moment the frame was captured, not to when it was drawn. Its answer goes into the frame's log
record ("position", and "position_missing" with the reason), and from there to the findings,
the console and the report: one path for every kind of position.
"""

from __future__ import annotations

from pathlib import Path

from edge.config import TelemetryConfig
from edge.errors import DataError
from edge.sources import Frame, FrameSource, VideoFileSource
from edge.sources.telemetry.dji_srt import SrtTrack, sidecar_for


class FrameLocator:
    """`locate(frame)` -> (position dict or None, why it is missing or None)."""

    def files(self) -> list[tuple[Path, str | None]]:
        """Files it reads, so that no output may write over them."""
        return []

    def locate(self, frame: Frame) -> tuple[dict | None, str | None]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the link (live telemetry); safe to call twice."""


class PhotoLocator(FrameLocator):
    def __init__(self, photos: dict[str, Path]) -> None:
        self.photos = photos

    def locate(self, frame: Frame) -> tuple[dict | None, str | None]:
        from edge.record.positions import read_position
        path = self.photos.get(frame.name)
        position = read_position(path) if path is not None else None
        if position is None:
            return None, "no GPS in the photo's EXIF"
        return {"rel_alt": None, **position, "source": "exif"}, None


class SrtLocator(FrameLocator):
    def __init__(self, track: SrtTrack) -> None:
        self.track = track

    def files(self) -> list[tuple[Path, str | None]]:
        return [(self.track.path, None)]

    def locate(self, frame: Frame) -> tuple[dict | None, str | None]:
        if frame.media_time_s is None:
            return None, "the frame has no video time"
        return self.track.position_at(frame.media_time_s)


class MavlinkLocator(FrameLocator):
    def __init__(self, uri: str, settings: TelemetryConfig) -> None:
        from edge.sources.telemetry.mavlink import MavlinkTelemetry
        self.link = MavlinkTelemetry(uri, settings.max_age_s, settings.baud)

    def locate(self, frame: Frame) -> tuple[dict | None, str | None]:
        return self.link.position_at(frame.captured_at)

    def close(self) -> None:
        self.link.close()


def open_locator(telemetry_uri: str | None, source: FrameSource,
                 settings: TelemetryConfig) -> FrameLocator | None:
    """The locator for this run, or None when its frames have no position to be had."""
    if telemetry_uri:
        return MavlinkLocator(telemetry_uri, settings)
    if isinstance(source, VideoFileSource):
        sidecar = sidecar_for(source.path)
        if sidecar is None:
            return None
        if not source.fps > 0:
            raise DataError(f"source {source.path}: its frame rate is unknown, so the frames "
                            f"cannot be matched to the cues of {sidecar}")
        return SrtLocator(SrtTrack.read(sidecar, settings.srt_max_gap_s))
    photos = {name: path for path, name in source.input_files() if name is not None}
    return PhotoLocator(photos) if photos else None
