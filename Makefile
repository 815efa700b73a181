# Entry points for a newcomer: `make demo` (try it locally, no credentials), `make test`
# (everything) and `make run` (the bot on a real Slack workspace).
.PHONY: demo run test check-config install clean

VENV := .venv
PORT ?= 3000

$(VENV)/bin/rollbot: pyproject.toml
	bash scripts/venv.sh
	touch $@

install: $(VENV)/bin/rollbot

# The playground on http://127.0.0.1:$(PORT): the bot, a local Slack and demo services.
# The backend is a real container when a Docker engine answers (DOCKER_HOST, the default
# socket, or the private one start-dockerd.sh starts here, best effort); else simulated.
demo: install
	@if [ -z "$${DOCKER_HOST:-}" ] && ! docker version >/dev/null 2>&1; then \
		bash scripts/start-dockerd.sh || \
		echo "make demo: no Docker engine could be started; the backend will be simulated"; \
	fi
	$(VENV)/bin/python -m playground.demo --port $(PORT)

# Serve Slack over HTTP; needs SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and ROLLBOT_CONFIG.
run: install
	$(VENV)/bin/rollbot serve --http --port $(PORT)

check-config: install
	$(VENV)/bin/rollbot check-config $(CONFIG)

test:
	bash scripts/test.sh

clean:
	rm -rf $(VENV) rollbot-data
