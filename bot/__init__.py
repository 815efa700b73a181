"""rollbot core: config, command parsing, the rollback engine and its store, free of Slack."""
