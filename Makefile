# Two entry points for a newcomer: `make run` (the bot) and `make test` (everything).
.PHONY: run test check-config install clean

VENV := .venv
PORT ?= 3000

$(VENV)/bin/rollbot: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/bin/rollbot

# Serve Slack over HTTP; needs SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and ROLLBOT_CONFIG.
run: install
	$(VENV)/bin/rollbot serve --http --port $(PORT)

check-config: install
	$(VENV)/bin/rollbot check-config $(CONFIG)

test:
	bash scripts/test.sh

clean:
	rm -rf $(VENV) rollbot-data
