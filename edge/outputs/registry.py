"""The kinds of output, named once: the CLI's `--output` help and `open_output`'s messages read
this table, and `open_output` builds a sink for each scheme in it. A leaf: it imports nothing,
so `--help` can show it without loading PyAV."""

# (scheme, example URI, what it gives); scheme "" is a file or folder path
OUTPUT_KINDS = (
    ("display", "display://0", "an OpenCV window"),
    ("", "out.mp4", "the overlay video (.mp4 or .avi)"),
    ("", "dir/", "one overlay JPEG per frame"),
    ("http", "http://127.0.0.1:8080", "the inspector's live page (MJPEG)"),
    ("rtp", "rtp://HOST:5600", "H.264 over RTP/UDP for QGroundControl or VLC (writes an SDP "
                               "file)"),
    ("udp", "udp://HOST:5600", "H.264 in MPEG-TS over UDP (VLC, ffplay, QGroundControl)"),
)

OUTPUT_SCHEMES = tuple(sorted({scheme for scheme, _, _ in OUTPUT_KINDS if scheme}))
OUTPUT_EXAMPLES = ", ".join(example for _, example, _ in OUTPUT_KINDS)
