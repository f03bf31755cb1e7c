"""rehab.app.frame_relay: aiortc's real MediaRelay machinery with a camera faster than its consumer."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from rehab.app.frame_relay import RELAY_QUEUE_FRAMES, BoundedMediaRelay, NewestFramesQueue

FRAMES = 300
# The consumer (the frame callback's track, or the encoder) takes this long per frame; the source none.
CONSUMER_S = 0.002


class FastCamera(MediaStreamTrack):
    """Numbered 64x48 frames as fast as they are asked for, then the end of the stream."""

    kind = "video"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.sent, self.frames = 0, frames

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(0)
        if self.sent >= self.frames:
            self.stop()
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24")
        frame.pts = self.sent
        self.sent += 1
        return frame


async def _consume(relay: MediaRelay) -> tuple[list[int], int]:
    """Received frame numbers and the largest queue length seen, until the stream ends."""
    proxy = relay.subscribe(FastCamera(FRAMES))
    seen, longest = [], 0
    while True:
        try:
            frame = await asyncio.wait_for(proxy.recv(), 10)
        except MediaStreamError:
            return seen, longest
        seen.append(frame.pts)
        longest = max(longest, proxy._queue.qsize())
        await asyncio.sleep(CONSUMER_S)


def test_stock_relay_queues_every_frame_for_a_slow_consumer():
    seen, longest = asyncio.run(_consume(MediaRelay()))
    assert len(seen) == FRAMES and longest > FRAMES // 2  # what the bounded relay is for


def test_bounded_relay_keeps_only_the_newest_frames_and_never_stalls():
    seen, longest = asyncio.run(_consume(BoundedMediaRelay()))
    assert longest <= RELAY_QUEUE_FRAMES
    assert seen == sorted(seen) and FRAMES - 1 in seen  # in order, up to the last frame, then the end
    assert len(seen) < FRAMES


def test_newest_frames_queue_drops_the_oldest_and_never_blocks_a_put():
    async def run() -> tuple[list[int], int]:
        q = NewestFramesQueue(2)
        for i in range(5):
            await asyncio.wait_for(q.put(i), 1)
        return [q.get_nowait() for _ in range(q.qsize())], q.dropped

    assert asyncio.run(run()) == ([3, 4], 3)
    with pytest.raises(ValueError, match="at least 1"):
        NewestFramesQueue(0)
