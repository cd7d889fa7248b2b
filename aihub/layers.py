"""The embedded channel layer: channels' in-memory layer, without a deep copy of every message it carries.

``channels.layers.InMemoryChannelLayer.send`` deep-copies each message, standing in for the serialisation a
real layer does. aihub's messages are event batches (``threads.events.publish``) built fresh for each commit
and only read by their receivers, and the copy was a tenth of the embedded server's event-loop time at one
client (50 events a batch). Everything else (capacity, expiry, groups) is the in-memory layer's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer


class SharedMessageChannelLayer(InMemoryChannelLayer):
    """Hands each receiver the message as sent; receivers must not change it (aihub's never do)."""

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            queue.put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None
