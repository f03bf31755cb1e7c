"""The live page's WebRTC relay: the camera reaches the frame callback newest-frame-only, older frames dropped.

streamlit-webrtc passes the camera track to the frame callback, and the callback's output to the browser,
through one aiortc MediaRelay per server, subscribed with ``buffered=True``: an unbounded queue of decoded
frames between the camera and the callback. On two busy cores the server fell behind a 30 fps camera and its
memory grew ~1.5 MB/s without end (benchmarks/README.md, "Long sessions"). Unbuffered, the callback gets the
newest camera frame (it processes only the newest anyway) and memory stays flat however slow the server is.
Only the camera's subscription is unbuffered: with every subscription unbuffered (the output to the browser
too) the stream stalled after ~50 frames in the soak test.

A module of its own, not the page file that Streamlit re-executes on every rerun, so that the relay class is
one class for the server's lifetime.
"""

from __future__ import annotations

from aiortc.contrib.media import MediaRelay

# aiortc's class of a track received from the browser (the camera); compared by name, it is not exported.
REMOTE_TRACK_CLASS = "RemoteStreamTrack"


class NewestFrameRelay(MediaRelay):
    """A MediaRelay whose subscriptions to a browser's track are unbuffered (newest frame only)."""

    def subscribe(self, track, buffered: bool = True):
        return super().subscribe(track, buffered=buffered and type(track).__name__ != REMOTE_TRACK_CLASS)


def use_newest_frame_relay() -> None:
    """Make NewestFrameRelay streamlit-webrtc's server-wide relay (once; streams already running keep theirs).

    streamlit-webrtc keeps its relay on the Streamlit runtime under a private attribute name
    (streamlit_webrtc.relay) and creates a plain MediaRelay there when none is set.
    """
    from streamlit.runtime import Runtime
    from streamlit_webrtc import relay as webrtc_relay
    from streamlit_webrtc.eventloop import get_global_event_loop, loop_context

    runtime = Runtime.instance()
    name = webrtc_relay._SERVER_GLOBAL_RELAY_ATTR_NAME_
    if not isinstance(getattr(runtime, name, None), NewestFrameRelay):
        with loop_context(get_global_event_loop()):
            setattr(runtime, name, NewestFrameRelay())
