"""Action ids and callback ids the Slack adapter uses, in one place."""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    """action_id of every interactive element rollbot posts."""

    ISSUE_SELECT = "rollbot_issue_select"
    CONFIRM_SEVERITY = "rollbot_confirm_severity"
    APPROVE = "rollbot_approve"
    REJECT = "rollbot_reject"
    CANCEL = "rollbot_cancel"
    APPROVE_DANGER = "rollbot_approve_danger"
    RETRY_STEP = "rollbot_retry_step"
    RESTORE_DATABASE = "rollbot_restore_database"
    FIX_FORWARD = "rollbot_fix_forward"
    RESTORE_CONFIRM = "rollbot_restore_confirm"
    RESTORE_CANCEL = "rollbot_restore_cancel"
    # A frozen service that drifted
    ROLLBACK_AGAIN = "rollbot_rollback_again"
    UNFREEZE = "rollbot_unfreeze"
    # Checklists and notifications
    CHECKLIST = "rollbot_checklist"
    POST_USER_NOTIFICATION = "rollbot_post_user_notification"
    EDIT_USER_NOTIFICATION = "rollbot_edit_user_notification"


class CallbackId(StrEnum):
    """callback_id of the modals."""

    REASON = "rollbot_reason"
    USER_NOTIFICATION = "rollbot_user_notification"


class BlockId(StrEnum):
    """block_id of blocks whose state is read back."""

    MATRIX = "rollbot_matrix"
    REASON = "rollbot_reason_input"
    OPTIONS = "rollbot_failure_options"
    CHECKLIST = "rollbot_checklist"
    USER_NOTIFICATION = "rollbot_user_notification_text"


REASON_INPUT = "reason"
NOTIFICATION_INPUT = "notification"
