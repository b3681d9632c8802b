"""Where each frame was taken: telemetry beside the frames (a DJI .SRT sidecar, live MAVLink).

A position is a plain dict, the same one photos get from their EXIF (edge/record/positions.py),
so the record, the findings and the report read every kind alike:

    lat, lon      degrees (WGS84)
    alt           metres above sea level, or None
    rel_alt       metres above the take-off point, or None
    gimbal        {"pitch", "yaw", "roll"} of the camera in degrees (pitch -90 = straight down),
                  or None
    attitude      {"roll", "pitch", "yaw"} of the vehicle in degrees (MAVLink), or None
    source        "exif" | "srt" | "mavlink"
    age_s         MAVLink: seconds between the fix's arrival and the frame's capture
    interpolated  SRT: True when the frame fell between two cues and got their blend

A frame whose position is not known for sure gets none, with the reason; it is never guessed
(no last-known position carried forward, no extrapolation).
"""
