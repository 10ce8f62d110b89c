.PHONY: demo test unit lint bench stack-up stack-down

demo:  ## the main job: local stack + pipeline on sample data, then verify
	scripts/demo.sh

test:  ## install + start everything, run all tests (unit and integration)
	scripts/test.sh

unit:
	scripts/bootstrap.sh && .venv/bin/python -m pytest tests -q -m unit

lint:
	scripts/lint.sh

stack-up:
	scripts/bootstrap.sh && .venv/bin/gorse-cdc stack up

stack-down:
	.venv/bin/gorse-cdc stack down
