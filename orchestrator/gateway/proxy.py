"""The preview gateway: an aiohttp server in front of every preview, by host name.

For each request it finds the preview its Host names (orchestrator.service.routing, cached for
ROUTE_SECONDS), lets it through if the website's previews are open or the caller carries a
share link or a token that opens them, wakes the preview if it sleeps, and forwards the request
to the preview's port: HTTP with bodies streamed both ways (nothing is buffered), and
websockets (Vite's HMR) message by message. What it forwards is counted per build and added to
Redis every second (orchestrator.coordination.traffic): idleness is judged by it.

Why a process of our own and not Caddy, nginx or HAProxy: none of them can hold a request while
a container starts and then send it on, nor tell a browser "waking up…" after one second while
other clients keep waiting, nor check our share links; each would need a Python service on
every request anyway (Caddy's forward_auth, nginx's auth_request). aiohttp does the protocol
work (HTTP/1.1, websockets); this module only decides and copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from yarl import URL

from orchestrator.context import Context
from orchestrator.coordination.traffic import Counts
from orchestrator.core.exceptions import HostBusy, OrchestratorError
from orchestrator.core.gateway import (
    SHARE_COOKIE,
    SHARE_PARAMETER,
    WAKE_WAIT,
    WAKING_AFTER,
    Route,
    RouteKind,
    cookie_value,
    forwarded_headers,
    is_browser_navigation,
    message_page,
    response_headers,
    route_for,
    waking_page,
)
from orchestrator.core.status import Status
from orchestrator.pipeline.sleep import settle, wake
from orchestrator.service.routing import Target, resolve, token_opens
from orchestrator.service.shares import Access, share_refusal

log = logging.getLogger(__name__)

ROUTE_SECONDS = 0.5
"""How long a host name's preview is remembered. A website's new build is reached this soon
after it goes live; its old preview keeps answering longer (Settings.replace_drain_seconds),
and a request that still meets it gone is sent to the new one."""

CHECK_SECONDS = 2.0
"""How long a share link's or token's answer is remembered (a revocation takes this long)."""

BOOST_SECONDS = 10.0
"""A woken preview keeps the build's CPU this long, for its first page's transforms."""

FLUSH_SECONDS = 1.0

THREADS = 12
"""Threads for the database lookups and wakes (each wake holds one until its preview answers);
fewer than the database pool's 15 connections, so that no thread waits for one."""

WAKERS = 6
"""Wakes at once: each starts a container and a dev server on this host's cores, and the engine
starts containers one after another anyway; more at once only makes each slower (and holds
more database connections)."""

SHARE_COOKIE_SECONDS = 30 * 24 * 3600

BUSY_RETRY_SECONDS = 30
"""When the host is short of memory, a visitor is asked to come back this much later."""

WS_HEADERS = (
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
)


@dataclasses.dataclass(frozen=True)
class NotWoken:
    why: str
    busy: bool = False
    """The host is short of memory: the wake may succeed later."""


def page(status: int, title: str, text: str, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        text=message_page(title, text),
        content_type="text/html",
        headers={"Cache-Control": "no-store", **headers},
    )


class Gateway:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.routes: dict[Route, tuple[float, Target | None]] = {}
        self.checks: dict[tuple[str, str], tuple[float, str | None]] = {}
        self.wakes: dict[str, asyncio.Future[NotWoken | None]] = {}
        self.counts: dict[str, Counts] = {}
        self.client: aiohttp.ClientSession | None = None

    # -- the application ---------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(handler_args={"max_field_size": 65536})
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        # Lookups and wakes run in threads: enough for WAKERS wakes at once beside the lookups.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(THREADS, thread_name_prefix="gateway")
        )
        self.waking = asyncio.Semaphore(WAKERS)
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # a visitor's cookies are theirs, never the gateway's
        )
        app["flusher"] = asyncio.ensure_future(self._flush_forever())

    async def _stop(self, app: web.Application) -> None:
        app["flusher"].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app["flusher"]
        await self._flush()
        if self.client is not None:
            await self.client.close()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self._flush()
            except Exception:  # Redis away: the counts of this second are lost, not the gateway
                log.exception("could not report the previews' traffic")

    async def _flush(self) -> None:
        counts, self.counts = self.counts, {}
        if counts:
            await asyncio.to_thread(self.ctx.stores.traffic.add, counts)

    # -- one request -------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except (RedisError, SQLAlchemyError) as exc:  # what the gateway asks before it forwards
            log.warning("cannot route %s: %s", request.host, exc)
            return page(
                503, "Previews are unavailable", "The gateway cannot reach its database or Redis: try again."
            )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        domain = self.settings.preview_domain
        route = route_for(request.headers.get("Host"), domain)
        if route is None:
            return page(
                404,
                "No preview here",
                f"This address names no preview. Previews are at http://<website id>.{domain}/ "
                f"and http://<build id>.b.{domain}/.",
            )
        target = await self.target(route)
        if target is None:
            return page(
                404,
                "No preview",
                "Nothing is live at this address: the website has no live preview yet, or it was "
                "stopped or deleted.",
            )
        shared = request.query.get(SHARE_PARAMETER)
        if shared is not None:
            return await self.open_share(request, target, shared)
        if target.access is Access.PROTECTED:
            refusal = await self.refusal(request, target)
            if refusal is not None:
                return page(403, "This preview is protected", refusal)
        if target.status is Status.SLEEPING:
            woken = await self.woken(request, route, target)
            if isinstance(woken, web.StreamResponse):
                return woken
            target = woken
        counts = self.counts.setdefault(target.build_id, Counts())
        counts.requests += 1
        counts.last_request = time.time()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request, target)
        return await self.http(request, route, target)

    async def target(self, route: Route, fresh: bool = False) -> Target | None:
        now = time.monotonic()
        cached = self.routes.get(route)
        if cached is not None and not fresh and now - cached[0] < ROUTE_SECONDS:
            return cached[1]
        found = await asyncio.to_thread(resolve, self.ctx, route)
        self.routes[route] = (now, found)
        return found

    # -- access --------------------------------------------------------------------

    async def check(self, kind: str, value: str, decide: Callable[[], Awaitable[str | None]]) -> str | None:
        key, now = (kind, value), time.monotonic()
        cached = self.checks.get(key)
        if cached is not None and now - cached[0] < CHECK_SECONDS:
            return cached[1]
        answer = await decide()
        if len(self.checks) > 10_000:
            self.checks.clear()
        self.checks[key] = (now, answer)
        return answer

    async def share_refusal(self, target: Target, token: str) -> str | None:
        async def decide() -> str | None:
            return await asyncio.to_thread(share_refusal, self.ctx, target.website_id, token, time.time())

        return await self.check(f"share:{target.website_id}", token, decide)

    async def open_share(self, request: web.Request, target: Target, token: str) -> web.StreamResponse:
        """A share link: checked, left as a cookie of this host name, and the visitor sent on to
        the same address without it (so that it is not copied along with the page's URL)."""
        refusal = await self.share_refusal(target, token)
        if refusal is not None:
            return page(403, "This share link does not open the preview", refusal)
        query = {k: v for k, v in request.query.items() if k != SHARE_PARAMETER}
        response = web.HTTPFound(str(request.rel_url.with_query(query)))
        response.set_cookie(
            SHARE_COOKIE, token, max_age=SHARE_COOKIE_SECONDS, httponly=True, samesite="Lax", path="/"
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def refusal(self, request: web.Request, target: Target) -> str | None:
        """Why the caller may not open a protected preview, None when they may."""
        authorization = request.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()

            async def decide() -> str | None:
                opens = await asyncio.to_thread(token_opens, self.ctx, target, token)
                return None if opens else "This API token is not the website owner's."

            return await self.check(f"token:{target.owner_id}", token, decide)
        shared = cookie_value(request.headers.get("Cookie"), SHARE_COOKIE)
        if shared is not None:
            return await self.share_refusal(target, shared)
        return "Open it with a share link from its owner, or send an API token of its owner."

    # -- waking ----------------------------------------------------------------------

    async def woken(self, request: web.Request, route: Route, target: Target) -> Target | web.StreamResponse:
        """The preview once awake; or the waking page for a browser still waiting after a second,
        or an error page when it cannot wake."""
        pending = self.wakes.get(target.build_id)
        if pending is None or pending.done():
            pending = asyncio.ensure_future(self._wake(target.build_id))
            self.wakes[target.build_id] = pending
        patience = WAKING_AFTER if is_browser_navigation(request.method, request.headers) else WAKE_WAIT
        try:
            why = await asyncio.wait_for(asyncio.shield(pending), patience)
        except TimeoutError:
            return web.Response(
                status=503,
                text=waking_page(target.website_name),
                content_type="text/html",
                headers={"Retry-After": "1", "Cache-Control": "no-store"},
            )
        if why is not None and why.busy:
            return page(
                503,
                "The preview is asleep",
                f"It cannot be woken right now: {why.why}. Try again in a minute.",
                **{"Retry-After": str(BUSY_RETRY_SECONDS)},
            )
        if why is not None:
            return page(502, "The preview did not wake", f"It could not be started again: {why.why}.")
        return dataclasses.replace(target, status=Status.RUNNING)  # awake where it slept

    async def _wake(self, build_id: str) -> NotWoken | None:
        why: NotWoken | None
        try:
            async with self.waking:
                failed = await asyncio.to_thread(wake, self.ctx, build_id, WAKE_WAIT)
            why = None if failed is None else NotWoken(failed)
        except HostBusy as exc:
            why = NotWoken(str(exc), busy=True)
        except (OrchestratorError, RedisError, SQLAlchemyError) as exc:
            why = NotWoken(f"the service could not start it ({type(exc).__name__}: {exc})")
        if why is not None:
            log.warning("build %s did not wake: %s", build_id, why.why)
        else:
            loop = asyncio.get_running_loop()
            loop.call_later(
                BOOST_SECONDS, lambda: asyncio.ensure_future(asyncio.to_thread(settle, self.ctx, build_id))
            )
        for route in [r for r, (_, t) in self.routes.items() if t is not None and t.build_id == build_id]:
            self.routes.pop(route, None)
        return why

    # -- forwarding ------------------------------------------------------------------

    def _headers(
        self, request: web.Request, target: Target, drop: tuple[str, ...] = ()
    ) -> list[tuple[str, str]]:
        found = forwarded_headers(request.headers.items(), target.upstream_host, request.host, request.remote)
        return [(n, v) for n, v in found if n.lower() not in drop]

    async def http(self, request: web.Request, route: Route, target: Target) -> web.StreamResponse:
        assert self.client is not None
        body = request.content if request.body_exists else None
        upstream: aiohttp.ClientResponse | None = None
        for _ in range(2):
            try:
                upstream = await self.client.request(
                    request.method,
                    URL(f"http://{target.address}{request.raw_path}", encoded=True),
                    headers=self._headers(request, target),
                    data=body,
                    allow_redirects=False,
                    skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                )
                break
            except aiohttp.ClientConnectionError as exc:
                log.info("build %s did not answer at %s: %r", target.build_id, target.address, exc)
                # Its preview went (replaced a moment ago, say): a website's address is sent to
                # whatever is live now, once; a request with a body is not sent twice.
                fresh = await self.target(route, fresh=True) if route.kind is RouteKind.WEBSITE else None
                if body is not None or fresh is None or fresh.build_id == target.build_id:
                    return page(502, "The preview does not answer", "Its server is not answering; try again.")
                target = fresh
        assert upstream is not None
        counts = self.counts.setdefault(target.build_id, Counts())
        counts.bytes_in += request.content_length or 0
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in response_headers(upstream.headers.items()):
                response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    self.counts.setdefault(target.build_id, Counts()).bytes_out += len(chunk)
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:  # the visitor went away (a reload, a closed tab)
                pass
        return response

    async def websocket(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert self.client is not None
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        try:
            upstream = await self.client.ws_connect(
                URL(f"ws://{target.address}{request.raw_path}", encoded=True),
                protocols=protocols,
                headers=self._headers(request, target, WS_HEADERS),
                max_msg_size=0,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return page(exc.status, "The preview refused the websocket", exc.message)
        except aiohttp.ClientConnectionError as exc:
            log.info("build %s did not answer at %s: %r", target.build_id, target.address, exc)
            return page(502, "The preview does not answer", "Its server is not answering; try again.")
        downstream = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0
        )
        await downstream.prepare(request)
        build_id = target.build_id

        async def pump(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, sink, inbound: bool
        ) -> None:
            async for message in source:
                counts = self.counts.setdefault(build_id, Counts())
                size = len(message.data) if isinstance(message.data, (str, bytes)) else 0
                if inbound:
                    counts.bytes_in += size
                    counts.last_request = time.time()
                else:
                    counts.bytes_out += size
                if message.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break
            await sink.close()

        tasks = [
            asyncio.ensure_future(pump(downstream, upstream, True)),
            asyncio.ensure_future(pump(upstream, downstream, False)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await upstream.close()
            await downstream.close()
        return downstream


def serve(ctx: Context, host: str, port: int) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(Gateway(ctx).app(), host=host, port=port, access_log=None, print=None)
