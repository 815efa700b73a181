"""A local stand-in for Slack (and for the hosted deploy APIs) to try rollbot without them."""
