"""What one person's Slack client shows of the FakeSlack: the JSON the playground page renders."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from playground.slack_api import BOT_USER_ID, FakeSlack, Json, UserActions

SLACKBOT = "USLACKBOT"  # the author of the client's own notices
BADGES = {BOT_USER_ID: "APP", SLACKBOT: "SLACKBOT"}  # Slack labels apps and Slackbot, not people


@dataclass
class ClientState:
    """What lives in people's Slack clients rather than in Slack: notices and form errors."""

    notices: dict[str, list[Json]] = field(default_factory=dict)  # user -> Slackbot notices
    view_errors: dict[str, Json] = field(default_factory=dict)  # view id -> block_id -> error
    first_seen: dict[str, float] = field(default_factory=dict)  # ts -> wall time it appeared

    def notify(self, fake: FakeSlack, user: str, channel: str, text: str, thread: str = "") -> None:
        """Show `user` alone a notice from Slackbot, after everything the channel shows now."""
        latest = max((m["ts"] for m in fake.messages(channel)), default="0")
        latest = max([latest, *(e["ts"] for e in fake.ephemerals)])
        # Fake timestamps are not wall times: the notice sorts just after the newest message.
        number = len(self.notices.get(user, []))
        self.notices.setdefault(user, []).append(
            {
                "ts": f"{latest}~{number:04d}",
                "channel": channel,
                "thread_ts": thread or None,
                "text": text,
                "user": SLACKBOT,
            }
        )

    def seen(self, ts: str) -> str:
        """The local time a message first appeared, as the client shows it (HH:MM)."""
        when = self.first_seen.setdefault(ts, time.time())
        return time.strftime("%H:%M", time.localtime(when))


def snapshot(
    fake: FakeSlack,
    users: UserActions,
    client: ClientState,
    *,
    user: str,
    channel: str,
    home: str,
) -> Json:
    """Everything `user` sees in `channel`: timeline, threads, their ephemerals and modals."""
    messages = fake.messages(channel)
    ephemerals = [e for e in fake.ephemerals_for(user) if e["channel"] == channel]
    notices = [n for n in client.notices.get(user, []) if n["channel"] == channel]
    replies: dict[str, list[Json]] = {}
    timeline: list[Json] = []
    for message in messages:
        root = message.get("thread_ts")
        shown = _shown(message, users, client, channel)
        if root and root != message["ts"]:
            replies.setdefault(root, []).append(shown)
            if message.get("reply_broadcast"):
                timeline.append({**shown, "broadcast": True})
        else:
            timeline.append(shown)
    # An ephemeral's "user" is who sees it; the bot wrote it (Slackbot the client's notices).
    private = [(e, BOT_USER_ID) for e in ephemerals] + [(n, SLACKBOT) for n in notices]
    for message, author in private:
        shown = {**_shown(message, users, client, channel), "author": author, "ephemeral": True}
        shown["badge"] = BADGES.get(author, "")
        root = message.get("thread_ts")
        if root:
            replies.setdefault(root, []).append(shown)
        else:
            timeline.append(shown)
    for message in timeline:
        thread = [r for r in replies.get(message["ts"], []) if not r["ephemeral"]]
        message["reply_count"] = len(thread)
        message["reply_names"] = sorted({r["author"] for r in thread})
    return {
        "you": user,
        "channel": channel,
        "home": home,
        "channels": _channels(fake, user, home),
        "names": _names(fake),
        "messages": sorted(timeline, key=lambda m: m["ts"]),
        "threads": {ts: sorted(r, key=lambda m: m["ts"]) for ts, r in replies.items()},
        "modals": [
            {**view, "errors": client.view_errors.get(view["id"], {})}
            for view in fake.open_views(user)
        ],
    }


def _shown(message: Json, users: UserActions, client: ClientState, channel: str) -> Json:
    """A message as the page needs it: author, time, blocks, files and the client's picks."""
    author = message.get("user") or BOT_USER_ID
    picks: dict[str, dict[str, Any]] = {}
    for (block_id, action_id), value in users.selections(channel, message["ts"]).items():
        picks.setdefault(block_id, {})[action_id] = value
    return {
        "ts": message["ts"],
        "thread_ts": message.get("thread_ts"),
        "author": author,
        "time": client.seen(message["ts"]),
        "text": message.get("text", ""),
        "blocks": message.get("blocks") or [],
        "attachments": message.get("attachments") or [],
        "files": message.get("files") or [],
        "badge": BADGES.get(author, ""),
        "ephemeral": False,
        "broadcast": False,
        "picks": picks,
    }


def _channels(fake: FakeSlack, user: str, home: str) -> list[Json]:
    """Channels with something to show, the composer's own first."""
    ids = [home]
    for message in fake.messages():
        if message["channel"] not in ids:
            ids.append(message["channel"])
    for private in fake.ephemerals_for(user):
        if private["channel"] not in ids:
            ids.append(private["channel"])
    return [{"id": c, "name": _channel_name(fake, c)} for c in ids]


def _names(fake: FakeSlack) -> Json:
    """Display names for mentions: people, the bot, channels."""
    people = {uid: str(u.get("name") or uid) for uid, u in fake.users.items()}
    people.setdefault(BOT_USER_ID, "rollbot")
    people.setdefault(SLACKBOT, "Slackbot")
    channels = {cid: _channel_name(fake, cid) for cid in [*fake.conversations, *fake.channels]}
    return {"users": people, "channels": channels}


def _channel_name(fake: FakeSlack, channel: str) -> str:
    named = fake.channels.get(channel, {}).get("name") or fake.conversations.get(channel, {}).get(
        "name"
    )
    return str(named or channel.lower())
