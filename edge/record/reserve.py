"""The free-space reserve of a record's card: below it the overlay video stops, nothing else.

On a rig the record lives on the same small SD card as the operating system. The video is what
fills it (tens of MB a minute); the findings and frames.jsonl are small and are what the report
needs. So before the first frame and at every frame after, `ReserveGuardedVideo` looks at the
free space of the record's file system; once it is under `record.reserve_mb` it closes the
video (which stays playable up to that frame) and raises `OutputStopped`, and the loop goes on
with the findings, the log and the live overlay. Nothing is ever deleted to make room.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge.errors import OutputStopped
from edge.outputs import FrameSink, OutputFrame

_MB = 1024 * 1024


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write on `folder`'s file system."""
    return shutil.disk_usage(folder).free


@dataclass
class VideoStop:
    """Why and where the video stopped (summary.json "video")."""

    at_frame: int | None = None        # the first frame not in the video (0: none recorded)
    free_mb: float | None = None
    reason: str | None = None


class ReserveGuardedVideo(FrameSink):
    """Wraps the record's video sink; stops it (OutputStopped) under the free-space reserve."""

    def __init__(self, video: FrameSink, folder: Path, reserve_mb: float,
                 free: Callable[[Path], int] = free_bytes) -> None:
        self.video, self.folder, self.reserve_mb = video, folder, reserve_mb
        self.name = video.name
        self._free = free
        self.stop = VideoStop()

    def free_mb(self) -> float:
        return self._free(self.folder) / _MB

    def writes_to(self, frame_name):
        return self.video.writes_to(frame_name)

    def owned_folder(self):
        return self.video.owned_folder()

    def start(self) -> None:
        self.video.start()

    def write(self, frame: OutputFrame) -> None:
        free_mb = self.free_mb()
        if free_mb < self.reserve_mb:
            when = f"at frame {frame.index}" if self._written() else "before its first frame"
            reason = (f"free space on {self.folder} is {free_mb:.0f} MB, under the reserve of "
                      f"{self.reserve_mb:g} MB (record.reserve_mb)")
            self.stop = VideoStop(frame.index, round(free_mb, 1), reason)
            self.video.close()   # what was recorded stays playable
            raise OutputStopped(f"recording the video stopped {when}: {reason}; findings, the "
                                "log and the live overlay go on")
        self.video.write(frame)

    def _written(self) -> int:
        return getattr(self.video, "written", 0)

    def close(self) -> None:
        self.video.close()

    def summary(self) -> dict:
        """summary.json "video": recorded all / part / none, and why it stopped."""
        if self.stop.reason is None:
            recorded = "all"
        else:
            recorded = "part" if self._written() else "none"
        return {"recorded": recorded, "stopped_at_frame": self.stop.at_frame,
                "free_mb_at_stop": self.stop.free_mb, "reason": self.stop.reason,
                "reserve_mb": self.reserve_mb}
