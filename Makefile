# Entry points for a newcomer: `make demo` (try it locally, no credentials), `make test`
# (everything) and `make run` (the bot on a real Slack workspace).
.PHONY: demo install-demo run test check-config install clean

VENV := .venv
PORT ?= 3000

# The runtime alone, for `make run` and `make check-config`.
$(VENV)/bin/rollbot: pyproject.toml
	VENV=$(VENV) bash scripts/venv.sh runtime
	touch $@

install: $(VENV)/bin/rollbot

# The playground on http://127.0.0.1:$(PORT): the bot, a local Slack and demo services.
# Installs the runtime and the playground's libraries (never the test tools) while a
# Docker engine starts for the backend's real container; without one it is simulated.
demo:
	@VENV=$(VENV) bash scripts/demo.sh --port $(PORT)

# What `make demo` installs, and nothing else.
install-demo:
	@VENV=$(VENV) bash scripts/demo.sh --install-only

# Serve Slack over HTTP; needs SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and ROLLBOT_CONFIG.
run: install
	$(VENV)/bin/rollbot serve --http --port $(PORT)

check-config: install
	$(VENV)/bin/rollbot check-config $(CONFIG)

test:
	bash scripts/test.sh

clean:
	rm -rf $(VENV) rollbot-data
