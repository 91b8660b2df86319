.PHONY: run test bench bench-api bench-scale openapi

## Serve the API locally (starts Postgres if needed; prints the Swagger UI address and token).
run:
	./scripts/run.sh

## Run every check and test (starts Postgres if needed).
test:
	./scripts/test.sh

## Onboard 1, 10 and 56 tenants against the emulator, then 1 and 56 through a slow proxy
## with the ECS limits, and print the figures.
bench:
	./scripts/bench.sh

## The API on the release build: reads under load next to /healthz, and a burst of 500
## mixed requests at once with two CPU hogs running; prints the figures.
bench-api:
	./scripts/bench-api.sh

## 56 tenants across three cells in two accounts and two regions against one cell, then
## the AWS calls per tenant per resync by bucket, the projection against AWS's limits, and
## passes, calls and events per tenant per hour at rest; prints the figures.
bench-scale:
	./scripts/bench-scale.sh

## Regenerate openapi/openapi.json from the code.
openapi:
	cargo run --quiet --locked --bin statehouse -- openapi > openapi/openapi.json
