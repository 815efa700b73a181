"""The fake Slack's workspace: channels and who is in them, people and user groups.

It answers conversations.create, .invite, .join and .info, users.info and
usergroups.users.list, and decides where the bot may post (`_check_writable`).
"""

from __future__ import annotations

import copy
import itertools
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from playground.slack_model import BOT_USER_ID, TEAM_ID, Json, SlackError, flag, required

# conversations.create: "Channel names may only contain lowercase letters, numbers, hyphens,
# and underscores, and must be 80 characters or less"; these words are Slack's own mentions.
CHANNEL_NAME_MAX = 80
CHANNEL_NAME = re.compile(r"[a-z0-9_-]+")
RESERVED_CHANNEL_NAMES = frozenset({"here", "channel", "everyone", "group"})
INVITE_USERS_MAX = 1000
USER_ID = re.compile(r"[UW][A-Z0-9_]{1,20}")
# users.info's tz_label is the zone's long name; these cover the zones the tests and the
# demo give people (others fall back to the abbreviation).
TZ_LABELS = {
    "UTC": "Coordinated Universal Time",
    "CET": "Central European Time",
    "CEST": "Central European Summer Time",
    "EST": "Eastern Standard Time",
    "EDT": "Eastern Daylight Time",
    "PST": "Pacific Standard Time",
    "PDT": "Pacific Daylight Time",
    "IST": "India Standard Time",
}


def zone_fields(tz: str) -> Json:
    """users.info's timezone of a person: `tz` (IANA), `tz_label`, `tz_offset` in seconds.

    A name zoneinfo does not know is passed on as is (Slack's data is not ours to fix);
    its label is the name and its offset 0.
    """
    try:
        now = datetime.now(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return {"tz": tz, "tz_label": tz, "tz_offset": 0}
    offset = now.utcoffset()
    abbreviation = now.tzname() or tz
    return {
        "tz": tz,
        "tz_label": TZ_LABELS.get(abbreviation, abbreviation),
        "tz_offset": int(offset.total_seconds()) if offset else 0,
    }


class _InviteError(SlackError):
    """conversations.invite refused: the first user's error, and each user's in `errors`."""

    def __init__(self, errors: list[Json]) -> None:
        super().__init__(str(errors[0]["error"]))
        self.errors = errors

    def body(self) -> Json:
        """The body with the per-user errors Slack lists."""
        return {**super().body(), "errors": self.errors}


class Workspace:
    """Channels, members, people and user groups, as a FakeSlack keeps them."""

    # FakeSlack's own: one counter for every id it issues, and the bot token's scopes.
    _ids: itertools.count[int]
    scopes: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, Json] = {}  # overrides merged into users.info answers
        self.channels: dict[str, Json] = {}  # overrides merged into conversations.info answers
        self.conversations: dict[str, Json] = {}  # channels that exist: created, or made by a test
        self._members: dict[str, set[str]] = {}
        # Off: a channel nobody created exists and holds the bot, as the older tests expect.
        # On: only created channels exist; others answer channel_not_found.
        self.strict_channels = False

    def create_channel(
        self,
        name: str,
        *,
        members: tuple[str, ...] = (BOT_USER_ID,),
        is_private: bool = False,
        is_archived: bool = False,
        creator: str = "U_SOMEONE",
    ) -> str:
        """Make a channel exist, as a person would have created it; return its id."""
        channel = self._new_channel(name, is_private=is_private, creator=creator)
        channel["is_archived"] = is_archived
        self._members[channel["id"]] = set(members)
        return str(channel["id"])

    def start_over(self) -> None:
        """Forget the channels the bot created; people and the workspace's channels stay."""
        for channel_id, channel in list(self.conversations.items()):
            if channel["creator"] == BOT_USER_ID:
                del self.conversations[channel_id]
                self._members.pop(channel_id, None)
                self.channels.pop(channel_id, None)

    def members(self, channel: str) -> set[str]:
        """Who is in a channel now (the bot included when it is)."""
        return set(self._members.get(channel, set()))

    def channel_named(self, name: str) -> Json | None:
        """The channel with this name, if one exists."""
        return next((dict(c) for c in self.conversations.values() if c["name"] == name), None)

    def register_user(
        self, user_id: str, name: str, *, real_name: str | None = None, tz: str | None = None
    ) -> None:
        """Make users.info know a person by name (and timezone), as their Slack profile would."""
        shown = real_name or name
        self.users[user_id] = {
            **self.users.get(user_id, {}),
            "name": name,
            "real_name": shown,
            "profile": {"display_name": name, "real_name": shown},
            **({"tz": tz} if tz else {}),
        }

    # --- Web API methods -------------------------------------------------------------------

    def _usergroup_users(self, args: Json) -> Json:
        group = required(args, "usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _users_info(self, args: Json) -> Json:
        user_id = required(args, "user")
        name = user_id.lower()
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name,
            "deleted": False,
            "is_bot": user_id == BOT_USER_ID,
            # Slack gives everyone a zone: their own, else the workspace's.
            "tz": "UTC",
            "profile": {"display_name": name, "real_name": name},
        }
        info = {**user, **self.users.get(user_id, {})}
        # The label and offset follow the zone, unless a test set them apart.
        return {"user": {**zone_fields(str(info["tz"])), **info}}

    def _conversations_info(self, args: Json) -> Json:
        channel_id = required(args, "channel")
        if self.strict_channels and channel_id not in self.conversations:
            raise SlackError("channel_not_found")
        channel = {
            "id": channel_id,
            "name": channel_id.lower(),
            "is_channel": True,
            "is_private": False,
            "is_archived": False,
            "is_member": True,
        }
        known = self.conversations.get(channel_id, {})
        return {"channel": {**channel, **known, **self.channels.get(channel_id, {})}}

    def _conversations_create(self, args: Json) -> Json:
        """Create a channel as Slack does, naming its errors the way the method documents them."""
        name = str(args.get("name") or "")
        if not name:
            raise SlackError("invalid_name_required")
        if len(name) > CHANNEL_NAME_MAX:
            raise SlackError("invalid_name_maxlength")
        if not CHANNEL_NAME.fullmatch(name):
            raise SlackError("invalid_name_specials")
        if not name.strip("-_"):
            raise SlackError("invalid_name_punctuation")
        if name in RESERVED_CHANNEL_NAMES:
            raise SlackError("invalid_name")
        if self.channel_named(name) is not None:
            raise SlackError("name_taken")
        channel = self._new_channel(name, is_private=flag(args.get("is_private")))
        self._members[channel["id"]] = {BOT_USER_ID}  # the creator is its first member
        return {"channel": copy.deepcopy(channel)}

    def _conversations_invite(self, args: Json) -> Json:
        """Invite users: one that cannot be invited fails the call for all, unless `force`."""
        channel_id = required(args, "channel")
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if not users:
            raise SlackError("no_user")
        if len(users) > INVITE_USERS_MAX:
            raise SlackError("too_many_users")
        channel = self.conversations.get(channel_id)
        if channel is None:
            raise SlackError("channel_not_found")
        if channel["is_archived"]:
            raise SlackError("is_archived")
        members = self._members.setdefault(channel_id, set())
        if BOT_USER_ID not in members:
            raise SlackError("not_in_channel")
        errors = [
            {"user": user, "ok": False, "error": error}
            for user in users
            if (error := self._invite_error(user, members))
        ]
        failed = {e["user"] for e in errors}
        if errors and not flag(args.get("force")):
            raise _InviteError(errors)
        members.update(u for u in users if u not in failed)
        answer: Json = {"channel": {**copy.deepcopy(channel), "num_members": len(members)}}
        if errors:
            answer["errors"] = errors
        return answer

    def _conversations_join(self, args: Json) -> Json:
        """Join a public channel; private ones take an invitation from a member."""
        channel_id = required(args, "channel")
        channel = self.conversations.get(channel_id)
        if channel is None:
            if self.strict_channels:
                raise SlackError("channel_not_found")
            return {"channel": {"id": channel_id, "is_member": True}}
        if channel["is_archived"]:
            raise SlackError("is_archived")
        if channel["is_private"]:
            raise SlackError("method_not_supported_for_channel_type")
        members = self._members.setdefault(channel_id, set())
        already = BOT_USER_ID in members
        members.add(BOT_USER_ID)
        answer: Json = {"channel": {**copy.deepcopy(channel), "is_member": True}}
        if already:
            answer["warning"] = "already_in_channel"
        return answer

    def _check_writable(self, channel_id: str, *, updating: bool = False) -> None:
        """Refuse a post where Slack would: gone, archived, or a channel the bot is not in.

        With chat:write.public a bot posts in public channels it never joined; a private
        channel it is not in looks to it as if it did not exist.
        """
        channel = self.conversations.get(channel_id)
        if channel is None:
            if self.strict_channels:
                raise SlackError("channel_not_found")
            return
        if channel["is_archived"]:
            raise SlackError("is_archived")
        if BOT_USER_ID in self._members.get(channel_id, set()):
            return
        if channel["is_private"]:
            raise SlackError("channel_not_found")
        if not updating and "chat:write.public" not in self.scopes:
            raise SlackError("not_in_channel")

    def _invite_error(self, user: str, members: set[str]) -> str | None:
        if user == BOT_USER_ID:
            return "cant_invite_self"
        if not USER_ID.fullmatch(user) or self.users.get(user, {}).get("deleted"):
            return "user_not_found"
        if user in members:
            return "already_in_channel"
        return None

    def _new_channel(self, name: str, *, is_private: bool, creator: str = BOT_USER_ID) -> Json:
        channel_id = f"C{next(self._ids):08d}"
        self.conversations[channel_id] = {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_member": True,
            "created": int(time.time()),
            "creator": creator,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }
        return self.conversations[channel_id]
