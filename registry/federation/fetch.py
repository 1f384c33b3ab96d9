"""Reading a peer over HTTP: its node card, its checkpoint, its log's tiles."""

from __future__ import annotations

import aiohttp

from registry.federation.card import CardError, NodeCard, card_from_document

CARD_PATH = "/api/v1/node"
MAX_DOCUMENT = 1 << 20


class CardUnavailable(RuntimeError):
    """The URL does not serve a valid node card; the message says why."""


async def get_bytes(
    session: aiohttp.ClientSession, url: str, *, seconds: float = 15, limit: int = MAX_DOCUMENT
) -> bytes:
    """GET `url`; aiohttp.ClientResponseError on an error status, ValueError past `limit`."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
        resp.raise_for_status()
        body = bytearray()
        # read(n) returns what has arrived, not n bytes: read to the end, within `limit`.
        async for chunk in resp.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise ValueError(f"{url} answered more than {limit} bytes")
    return bytes(body)


async def fetch_card(
    session: aiohttp.ClientSession, url: str, *, insecure: bool = False
) -> NodeCard:
    base = url.rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise CardUnavailable(f"{url!r} is not an http(s) URL")
    if base.startswith("http://") and not insecure:
        raise CardUnavailable(f"{url} is plain HTTP; pass --insecure for loopback tests only")
    try:
        return card_from_document(await get_bytes(session, base + CARD_PATH))
    except CardError as exc:
        raise CardUnavailable(f"{base} does not serve a valid node card: {exc}") from exc
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        raise CardUnavailable(f"cannot read the node card at {base}: {exc}") from exc
