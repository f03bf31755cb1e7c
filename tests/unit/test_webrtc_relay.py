"""The live page's relay hands the browser's camera to the callback newest-frame-only (no unbounded queue)."""

from __future__ import annotations

from aiortc.mediastreams import VideoStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from rehab.app.webrtc_relay import NewestFrameRelay


def test_camera_subscriptions_keep_only_the_newest_frame_others_stay_buffered():
    relay = NewestFrameRelay()
    camera = relay.subscribe(RemoteStreamTrack(kind="video"))
    assert camera._buffered is False and camera._queue is None  # no queue that could grow
    assert relay.subscribe(RemoteStreamTrack(kind="video"), buffered=False)._buffered is False
    # The callback's output to the browser keeps aiortc's default (every subscription unbuffered stalled).
    assert relay.subscribe(VideoStreamTrack())._buffered is True
