"""The fake Slack's messages: what chat.* and files.* leave in channels and threads.

It keeps messages (thread replies included), ephemerals and uploaded files, validates
blocks as Slack does and fills in the block and action ids Slack assigns.
"""

from __future__ import annotations

import copy
import itertools
import json
import secrets
from typing import Any

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

from playground.slack_limits import MESSAGE_BLOCKS_MAX, check_text
from playground.slack_model import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    Json,
    SlackError,
    as_sent,
    flag,
    interactive,
    required,
)
from playground.slack_workspace import Workspace

UPLOAD_PATH = "/upload/v1/"  # where files.getUploadURLExternal sends the bytes


class MessageStore(Workspace):
    """Messages, ephemerals and files, and the chat.* and files.* methods that make them."""

    url: str  # FakeSlack's own, where it listens

    def __init__(self) -> None:
        super().__init__()
        self.ephemerals: list[Json] = []
        self.files: dict[str, Json] = {}  # file id -> the file, its bytes and where it went
        self._messages: dict[tuple[str, str], Json] = {}
        self._ts_counter = itertools.count(1)

    def start_over(self) -> None:
        """Forget every message, ephemeral and file; the ts counter goes on, so none comes back."""
        super().start_over()
        self._messages.clear()
        self.ephemerals.clear()
        self.files.clear()

    def messages(self, channel: str | None = None) -> list[Json]:
        """Messages as they are now (thread replies included), in the order they were posted."""
        return [
            copy.deepcopy(m)
            for (c, _), m in self._messages.items()
            if channel is None or c == channel
        ]

    def thread(self, channel: str, thread_ts: str) -> list[Json]:
        """Replies in a thread, oldest first, without the parent."""
        return [
            m
            for m in self.messages(channel)
            if m["thread_ts"] == thread_ts and m["ts"] != thread_ts
        ]

    def message(self, channel: str, ts: str) -> Json:
        """The message at (channel, ts) as it is now."""
        found = self._messages.get((channel, ts))
        if found is None:
            raise AssertionError(f"no message {channel}/{ts}; have {list(self._messages)}")
        return copy.deepcopy(found)

    def uploads(self, channel: str | None = None, thread_ts: str | None = None) -> list[Json]:
        """Files shared with files.completeUploadExternal, in order, with their `content`.

        `content` is the bytes read as UTF-8 (a report); `data` is the bytes as sent (an image).
        """
        return [
            copy.deepcopy(f)
            for f in self.files.values()
            if f["shared"]
            and (channel is None or f["channel"] == channel)
            and (thread_ts is None or f["thread_ts"] == thread_ts)
        ]

    def ephemerals_for(self, user: str) -> list[Json]:
        """Ephemeral messages only `user` sees, in order."""
        return [copy.deepcopy(e) for e in self.ephemerals if e["user"] == user]

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: raw bytes or a multipart form; Slack answers 200 once it has them."""
        file = next(
            (f for f in self.files.values() if f["upload_token"] == request.match_info["token"]),
            None,
        )
        if file is None or file["shared"]:
            return web.Response(status=404, text="upload_url_not_found")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            fields = [v for v in form.values() if isinstance(v, web.FileField)]
            if not fields:
                return web.Response(status=400, text="no_file_data")
            data = fields[0].file.read()
        else:
            data = await request.read()
        file["content"] = data.decode("utf-8", errors="replace")
        file["data"] = data
        file["size"] = len(data)
        file["uploaded"] = True
        return web.Response(text=f"OK - {len(data)}")

    # --- Web API methods -------------------------------------------------------------------

    def _post_message(self, args: Json) -> Json:
        channel = required(args, "channel")
        self._check_writable(channel)
        check_text(args)
        blocks = self._checked_blocks(args.get("blocks"), MESSAGE_BLOCKS_MAX)
        if not (args.get("text") or blocks or args.get("attachments")):
            raise SlackError("no_text")
        ts = self._next_ts()
        message: Json = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": args.get("text", ""),
            "blocks": blocks,
            "attachments": args.get("attachments", []),
            "thread_ts": args.get("thread_ts"),
            "reply_broadcast": flag(args.get("reply_broadcast")),
        }
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": as_sent(message)}

    def _update(self, args: Json) -> Json:
        channel, ts = required(args, "channel"), required(args, "ts")
        self._check_writable(channel, updating=True)
        check_text(args)
        message = self._messages.get((channel, ts))
        if message is None:
            raise SlackError("message_not_found")
        # Fields left out keep their previous value, as chat.update documents.
        if "blocks" in args:
            message["blocks"] = self._checked_blocks(args["blocks"], MESSAGE_BLOCKS_MAX)
        if "text" in args:
            message["text"] = args["text"]
        if "attachments" in args:
            message["attachments"] = args["attachments"]
        return {"channel": channel, "ts": ts, "text": message["text"], "message": as_sent(message)}

    def _delete(self, args: Json) -> Json:
        channel, ts = required(args, "channel"), required(args, "ts")
        if self._messages.pop((channel, ts), None) is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "ts": ts}

    def _get_permalink(self, args: Json) -> Json:
        # Slack answers message_not_found for a ts it does not hold in that channel.
        channel, ts = required(args, "channel"), required(args, "message_ts")
        if (channel, ts) not in self._messages:
            raise SlackError("message_not_found")
        link = f"{self.url}/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _post_ephemeral(self, args: Json) -> Json:
        channel, user = required(args, "channel"), required(args, "user")
        self._check_writable(channel, updating=True)
        check_text(args)
        blocks = self._checked_blocks(args.get("blocks"), MESSAGE_BLOCKS_MAX)
        if not (args.get("text") or blocks or args.get("attachments")):
            raise SlackError("no_text")
        ts = self._next_ts()
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "ts": ts,
                "text": args.get("text", ""),
                "blocks": blocks,
                "thread_ts": args.get("thread_ts"),
            }
        )
        return {"message_ts": ts}

    def _get_upload_url(self, args: Json) -> Json:
        filename = required(args, "filename")
        try:
            length = int(required(args, "length"))
        except ValueError:
            raise SlackError("invalid_arguments", "length must be an integer") from None
        if length < 1:
            raise SlackError("invalid_arguments", "length must be a positive integer")
        file_id = f"F{next(self._ids):08d}"
        token = secrets.token_urlsafe(12)
        self.files[file_id] = {
            "id": file_id,
            "name": filename,
            "title": filename,
            "length": length,
            "size": 0,
            "content": None,
            "data": None,
            "alt_txt": args.get("alt_txt"),
            "upload_token": token,
            "uploaded": False,
            "shared": False,
            "channel": None,
            "thread_ts": None,
            "initial_comment": None,
        }
        return {"upload_url": f"{self.url}{UPLOAD_PATH}{token}", "file_id": file_id}

    def _complete_upload(self, args: Json) -> Json:
        files = required(args, "files")
        if isinstance(files, str):
            try:
                files = json.loads(files)
            except ValueError:
                raise SlackError("invalid_arguments", "files must be a JSON array") from None
        if not isinstance(files, list) or not all(
            isinstance(f, dict) and f.get("id") for f in files
        ):
            raise SlackError("invalid_arguments", "files must be an array of objects with an id")
        channel = args.get("channel_id") or None
        channels = [c for c in str(args.get("channels") or "").split(",") if c]
        thread_ts = args.get("thread_ts") or None
        if thread_ts and len([c for c in [channel, *channels] if c]) != 1:
            raise SlackError("invalid_arguments", "thread_ts needs exactly one channel")
        found = [self.files.get(str(f["id"])) for f in files]
        # Completing works once per upload, and only after the bytes reached the upload URL.
        if any(f is None or f["shared"] or not f["uploaded"] for f in found):
            raise SlackError("file_not_found")
        target = channel or (channels[0] if channels else None)
        if target is not None:
            self._check_writable(target)
        shared: list[Json] = []
        for given, file in zip(files, found, strict=True):
            assert file is not None
            file.update(
                shared=True,
                title=given.get("title") or file["name"],
                channel=target,
                thread_ts=thread_ts,
                initial_comment=args.get("initial_comment"),
            )
            shared.append({"id": file["id"], "title": file["title"]})
        if target is not None:
            ts = self._next_ts()
            self._messages[(target, ts)] = {
                "type": "message",
                "subtype": "file_share",
                "channel": target,
                "ts": ts,
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "text": args.get("initial_comment") or "",
                "blocks": [],
                "files": [
                    {"id": f["id"], "name": f["name"], "title": f["title"], "size": f["size"]}
                    for f in found
                    if f is not None
                ],
                "thread_ts": thread_ts,
                "reply_broadcast": False,
            }
        return {"files": shared}

    # --- state helpers ---------------------------------------------------------------------

    def _next_ts(self) -> str:
        micros = 1_700_000_000_000_000 + 100 * next(self._ts_counter)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _checked_blocks(self, blocks: Any, limit: int) -> list[Json]:
        """Validate blocks like Slack does and fill in the ids Slack assigns."""
        if blocks is None:
            return []
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        if len(blocks) > limit:
            raise SlackError(
                "invalid_blocks", f"no more than {limit} items allowed [json-pointer:]"
            )
        blocks = copy.deepcopy(blocks)
        block_ids: set[str] = set()
        for index, block in enumerate(blocks):
            try:
                parsed = Block.parse(block) if isinstance(block, dict) else None
                if parsed is None:
                    raise SlackObjectFormationError(f"unknown block {block!r}")
                parsed.to_dict()
            except (SlackObjectFormationError, TypeError) as exc:
                raise SlackError("invalid_blocks", f"{exc} [json-pointer:/blocks/{index}]") from exc
            block.setdefault("block_id", f"b{next(self._ids)}")
            if block["block_id"] in block_ids:
                raise SlackError("invalid_blocks", f"duplicate block_id {block['block_id']!r}")
            block_ids.add(block["block_id"])
            action_ids: set[str] = set()
            for element in interactive(block):
                element.setdefault("action_id", f"a{next(self._ids)}")
                if element["action_id"] in action_ids:
                    raise SlackError(
                        "invalid_blocks", f"duplicate action_id {element['action_id']!r}"
                    )
                action_ids.add(element["action_id"])
        return blocks
