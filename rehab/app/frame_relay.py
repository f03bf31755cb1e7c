"""Bounded frame queues between the browser's camera and the live page's frame callback.

streamlit-webrtc relays every WebRTC track through one server-wide aiortc ``MediaRelay``: the camera's
decoded frames to the frame callback's track, and the processed frames to the sender that encodes them back
to the browser. Its buffered subscriptions are unbounded ``asyncio.Queue``s, drained only as fast as their
consumer keeps up: on two busy cores the sender (VP8 encoding) and the event loop fell behind 15-30 fps, and
640x480 frames (460 KB decoded) piled up at ~1.5 MB/s (benchmarks/README.md, "Long sessions").

:class:`BoundedMediaRelay` keeps the buffered semantics (every consumer waits on its own queue, as with the
stock relay) but bounds each queue to a few frames, dropping the oldest when a new one arrives: a live view
wants the newest frame, and memory stays flat however slow the consumer. (An unbuffered, newest-frame-only
subscription was tried before and stalled streams; this changes nothing but the queue's bound.)
:func:`install` makes it the relay streamlit-webrtc uses, before the first stream of the server.
"""

from __future__ import annotations

import asyncio
import logging

from aiortc.contrib.media import MediaRelay

log = logging.getLogger(__name__)

# Frames a relayed track may hold for a slow consumer: enough to absorb jitter, ~1.4 MB at 640x480.
RELAY_QUEUE_FRAMES = 3


class NewestFramesQueue(asyncio.Queue):
    """An ``asyncio.Queue`` that never makes its producer wait: when full, a put drops the oldest item."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"a newest-frames queue needs room for at least 1 item, got {maxsize}")
        super().__init__(maxsize)
        self.dropped = 0

    def put_nowait(self, item) -> None:
        while self.full():
            self.get_nowait()
            self.dropped += 1
        super().put_nowait(item)

    async def put(self, item) -> None:
        self.put_nowait(item)


class BoundedMediaRelay(MediaRelay):
    """aiortc's relay with every buffered subscription's queue bounded to the newest frames."""

    def __init__(self, queue_frames: int = RELAY_QUEUE_FRAMES) -> None:
        super().__init__()
        self.queue_frames = queue_frames

    def subscribe(self, track, buffered: bool = True):
        proxy = super().subscribe(track, buffered)
        if buffered:
            # The stock relay made an unbounded queue; nothing has used it yet (the proxy starts on its first recv).
            proxy._queue = NewestFramesQueue(self.queue_frames)
        return proxy


def install() -> MediaRelay:
    """Make a BoundedMediaRelay streamlit-webrtc's server-wide relay (idempotent); the relay in use.

    A stock relay already made (a stream started before this was called) is replaced only while it relays
    nothing, so that no running stream loses its relay.
    """
    from streamlit.runtime import Runtime
    from streamlit_webrtc import relay as webrtc_relay

    runtime = Runtime.instance()
    name = webrtc_relay._SERVER_GLOBAL_RELAY_ATTR_NAME_
    current = getattr(runtime, name, None)
    if isinstance(current, BoundedMediaRelay):
        return current
    if current is not None and getattr(current, "_MediaRelay__proxies", None):
        log.warning("streamlit-webrtc's relay is already relaying streams; its frame queues stay unbounded "
                    "until the server restarts")
        return current
    relay = BoundedMediaRelay()
    setattr(runtime, name, relay)
    log.info("live video frames are relayed through queues of at most %d frames", relay.queue_frames)
    return relay
