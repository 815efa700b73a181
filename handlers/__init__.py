"""The Slack adapter: Bolt listeners that turn payloads into engine calls and back."""
