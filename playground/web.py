"""The playground page: a Slack channel in the browser, acting on the bot as chosen people.

The page reads what one person's client would show from the FakeSlack (a Server-Sent
Events stream of snapshots) and acts through `UserActions`, so the bot receives exactly
what Slack would send it. What Slack itself shows when the bot fails (a command that
errors, a click nobody answers) appears as a notice only the person who acted sees.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from playground.controls import Reset, ResetFailed, Services, about, readme
from playground.origin import same_origin_json
from playground.slack_api import FakeSlack, Json, UserActions
from playground.snapshot import ClientState, snapshot

STATIC = Path(__file__).with_name("static")
COMMANDS = ("/rollback",)  # the slash commands the app registers
REFRESH_SECONDS = 0.25  # the fake has no change feed: each stream compares snapshots this often

Delivery = Callable[[], Awaitable[tuple[int, str] | None]]


@dataclass(frozen=True)
class Person:
    """Someone the playground acts as; `role` is shown next to the name in the "you are" switch."""

    id: str
    name: str
    role: str


class BadRequest(Exception):
    """A request the page should not have sent; its text is shown as is."""


def playground_app(
    fake: FakeSlack,
    users: UserActions,
    people: list[Person],
    channel: str,
    services: Callable[[], Services],
    reset: Reset | None = None,
) -> web.Application:
    """The page and its JSON API over `fake`; every action reaches the bot through `users`."""
    for person in people:
        fake.register_user(person.id, person.name)
    playground = Playground(fake, users, people, channel, services, reset)
    app = web.Application(middlewares=[same_origin_json])
    app.router.add_get("/", playground.page)
    app.router.add_get("/readme", readme)
    app.router.add_get("/api/config", playground.config)
    app.router.add_get("/api/state", playground.state)
    app.router.add_get("/api/events", playground.events)
    app.router.add_get("/api/files/{file_id}", playground.file)
    app.router.add_post("/api/command", playground.command)
    app.router.add_post("/api/click", playground.click)
    app.router.add_post("/api/select", playground.select)
    app.router.add_post("/api/checkbox", playground.checkbox)
    app.router.add_post("/api/view/submit", playground.submit_view)
    app.router.add_post("/api/view/close", playground.close_view)
    app.router.add_post("/api/reset", playground.reset)
    app.router.add_static("/static/", STATIC)
    # Open event streams end when the server stops, instead of holding its shutdown.
    app.on_shutdown.append(playground.shutdown)
    return app


class Playground:
    """The handlers of `playground_app`, sharing the fake and what the clients hold."""

    def __init__(
        self,
        fake: FakeSlack,
        users: UserActions,
        people: list[Person],
        channel: str,
        services: Callable[[], Services],
        start_over: Reset | None,
    ) -> None:
        self.fake = fake
        self.users = users
        self.people = {p.id: p for p in people}
        self.channel = channel
        self.services = services
        self.start_over = start_over
        self.resetting = False
        self.epoch = 0  # how many resets: a page that sees it change reads /api/config again
        self.client = ClientState()
        self.stopping = asyncio.Event()

    # --- reading ---------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        """The single page."""
        return web.FileResponse(STATIC / "index.html")

    async def config(self, request: web.Request) -> web.Response:
        """What changes only with a reset: the people, the channel, what is real here."""
        return web.json_response(
            {
                "people": [asdict(p) for p in self.people.values()],
                "channel": self.channel,
                "commands": list(COMMANDS),
                "about": about(self.services()),
                "reset": self.start_over is not None,
                "epoch": self.epoch,
            }
        )

    async def state(self, request: web.Request) -> web.Response:
        """One snapshot of what ?user= sees in ?channel=."""
        try:
            return web.json_response(self._snapshot(request))
        except BadRequest as exc:
            return _error(str(exc))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Snapshots as Server-Sent Events, one each time what the person sees changes."""
        try:
            self._snapshot(request)
        except BadRequest as exc:
            return _error(str(exc))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        last = ""
        try:
            while not self.stopping.is_set():
                current = json.dumps(self._snapshot(request))
                if current != last:
                    await response.write(f"data: {current}\n\n".encode())
                    last = current
                try:
                    await asyncio.wait_for(self.stopping.wait(), REFRESH_SECONDS)
                except TimeoutError:
                    pass
        except ConnectionResetError:
            pass  # the page went away; EventSource reconnects if it comes back
        return response

    async def file(self, request: web.Request) -> web.Response:
        """The text of a file the bot uploaded, as "View file" in Slack shows it."""
        found = self.fake.files.get(request.match_info["file_id"])
        if found is None or not found["shared"]:
            return _error("No such file.", status=404)
        return web.Response(text=found["content"] or "", content_type="text/plain")

    async def shutdown(self, app: web.Application) -> None:
        """End the event streams."""
        self.stopping.set()

    # --- acting ----------------------------------------------------------------------------

    async def command(self, request: web.Request) -> web.Response:
        """Run the composer's text as a slash command; Slack sends the bot nothing else."""
        args = await self._args(request, "user", "channel", "text")
        if isinstance(args, web.Response):
            return args
        user, channel, text = args["user"], args["channel"], args["text"].strip()
        name, _, rest = text.partition(" ")
        if not text.startswith("/"):
            return _error(
                "This playground sends slash commands only: try /rollback backend v1.2.3 "
                "or /rollback help."
            )
        if name not in COMMANDS:
            # Slack's own words for a command no app in the workspace registered.
            return _error(
                f"{name} is not a valid command. In Slack, all messages that start "
                'with the "/" character are interpreted as commands.'
            )

        async def deliver() -> tuple[int, str]:
            return await self.users.command(rest.strip(), user=user, channel=channel, command=name)

        # A command's ack with a body is shown as a reply by the fake itself, as Slack does.
        try:
            await self._deliver(user, channel, "", deliver, command=name)
        except BadRequest as exc:
            return _error(str(exc), status=409)
        return web.json_response({"ok": True})

    async def click(self, request: web.Request) -> web.Response:
        """Click a button (after its confirm dialog, which the page shows)."""
        args = await self._args(request, "user", "channel", "ts", "action_id")
        if isinstance(args, web.Response):
            return args

        async def deliver() -> tuple[int, str]:
            return await self.users.click(
                args["channel"], args["ts"], args["action_id"], user=args["user"]
            )

        return await self._interact(args, deliver)

    async def select(self, request: web.Request) -> web.Response:
        """Pick an option of a static select."""
        args = await self._args(request, "user", "channel", "ts", "action_id", "value")
        if isinstance(args, web.Response):
            return args

        async def deliver() -> tuple[int, str]:
            return await self.users.select(
                args["channel"], args["ts"], args["action_id"], args["value"], user=args["user"]
            )

        return await self._interact(args, deliver)

    async def checkbox(self, request: web.Request) -> web.Response:
        """Tick or untick one box of a checkboxes element."""
        args = await self._args(request, "user", "channel", "ts", "action_id", "value")
        if isinstance(args, web.Response):
            return args

        async def deliver() -> tuple[int, str]:
            return await self.users.toggle_checkbox(
                args["channel"], args["ts"], args["action_id"], args["value"], user=args["user"]
            )

        return await self._interact(args, deliver)

    async def submit_view(self, request: web.Request) -> web.Response:
        """Submit a modal with the values typed or picked: {block_id: {action_id: value}}."""
        args = await self._args(request, "user", "view_id")
        if isinstance(args, web.Response):
            return args
        values = args.get("values")
        if not isinstance(values, dict):
            return _error("values must map block ids to {action_id: value}.")
        view_id, user = args["view_id"], args["user"]
        if self.fake.view_users.get(view_id) != user:
            return _error("That modal is not open for this person.", status=409)
        try:
            status, body = await self.users.submit_view(view_id, values, user=user)
        except AssertionError as exc:
            return _error(_client_words(exc), status=409)
        except aiohttp.ClientError:
            status, body = 0, ""
        errors: Json = {}
        if status == 200 and body.strip():
            answer = json.loads(body)
            if answer.get("response_action") == "errors":
                errors = answer.get("errors") or {}
        elif status != 200:
            # Slack keeps the modal open with its own line above the inputs.
            errors = {"": "We had some trouble connecting. Try again?"}
        self.client.view_errors[view_id] = errors
        return web.json_response({"ok": not errors, "errors": errors})

    async def close_view(self, request: web.Request) -> web.Response:
        """Close a modal with its Close button."""
        args = await self._args(request, "user", "view_id")
        if isinstance(args, web.Response):
            return args
        if self.fake.view_users.get(args["view_id"]) != args["user"]:
            return _error("That modal is not open for this person.", status=409)
        try:
            await self.users.close_view(args["view_id"], user=args["user"])
        except AssertionError as exc:
            return _error(_client_words(exc), status=409)
        except aiohttp.ClientError:
            pass  # the modal is gone from the client whether or not the app heard of it
        return web.json_response({"ok": True})

    async def reset(self, request: web.Request) -> web.Response:
        """Start the demo over: a fresh channel, every service as it started, a fresh bot."""
        if self.start_over is None:
            return _error("This playground has nothing to reset.", status=404)
        if self.resetting:
            return _error("A reset is running already.", status=409)
        self.resetting = True
        began = time.monotonic()
        try:
            self.users = await self.start_over()
        except ResetFailed as exc:
            return _error(f"The reset failed: {exc}", status=500)
        finally:
            self.resetting = False
            # Notices and form errors lived in clients: the new channel has none.
            self.client = ClientState()
            self.epoch += 1
        return web.json_response({"ok": True, "seconds": round(time.monotonic() - began, 1)})

    # --- helpers ---------------------------------------------------------------------------

    def _snapshot(self, request: web.Request) -> Json:
        user = request.query.get("user", "")
        if user not in self.people:
            raise BadRequest(f"Unknown person {user!r}.")
        channel = request.query.get("channel") or self.channel
        shown = snapshot(
            self.fake, self.users, self.client, user=user, channel=channel, home=self.channel
        )
        return {**shown, "epoch": self.epoch, "resetting": self.resetting}

    async def _args(self, request: web.Request, *required: str) -> Json | web.Response:
        """The JSON body, with each required field a non-empty string and a known person."""
        try:
            args = await request.json()
        except ValueError:
            return _error("The body must be JSON.")
        if not isinstance(args, dict):
            return _error("The body must be a JSON object.")
        for name in required:
            if not isinstance(args.get(name), str) or not args[name]:
                return _error(f"{name} is required.")
        if args["user"] not in self.people:
            return _error(f"Unknown person {args['user']!r}.")
        if self.resetting:
            return _error("The playground is resetting: try again in a moment.", status=503)
        return args

    async def _interact(self, args: Json, deliver: Delivery) -> web.Response:
        """Send a block action; the bot's answer body means nothing to Slack, its status does."""
        if not self._shows(args["user"], args["channel"], args["ts"]):
            # A page left open across a reset still shows the old cards: they must not act.
            return _error(
                "That message is no longer in the channel: the playground was reset, or the "
                "message deleted. Reload the page.",
                status=409,
            )
        try:
            await self._deliver(args["user"], args["channel"], args.get("thread_ts") or "", deliver)
        except BadRequest as exc:
            return _error(str(exc), status=409)
        return web.json_response({"ok": True})

    async def _deliver(
        self, user: str, channel: str, thread: str, deliver: Delivery, *, command: str = ""
    ) -> tuple[int, str] | None:
        """Deliver to the bot and show `user` what Slack shows when the bot fails to answer."""
        status = 0
        try:
            outcome = await deliver()
        except AssertionError as exc:
            if "operation_timeout" not in str(exc):
                # UserActions refused: the page showed something the client no longer has.
                raise BadRequest(_client_words(exc)) from None
            error = "operation_timeout"
        except aiohttp.ClientError:
            error = "dispatch_failed"
        else:
            if outcome is None or outcome[0] == 200:
                return outcome
            status, error = outcome[0], "http_service_error"
        if command:
            text = f'{command} failed with the error "{error}"'
        elif status:
            text = f"This app responded with Status Code {status}"
        else:
            text = f'This app did not respond ("{error}"). Try again in a moment.'
        self._notify(user, channel, thread, text)
        return None

    def _shows(self, user: str, channel: str, ts: str) -> bool:
        """Whether `user`'s client has the message at (channel, ts) now."""
        mine = self.fake.ephemerals_for(user)
        return any(m["ts"] == ts for m in self.fake.messages(channel)) or any(
            (e["channel"], e["ts"]) == (channel, ts) for e in mine
        )

    def _notify(self, user: str, channel: str, thread: str, text: str) -> None:
        self.client.notify(self.fake, user, channel, text, thread)


def _client_words(error: AssertionError) -> str:
    """The first line of UserActions' refusal: what the client could not do."""
    return str(error).splitlines()[0] if str(error) else "The page is out of date; try again."


def _error(text: str, *, status: int = 400) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error": text}
    return web.json_response(body, status=status)
