"""Every test in the repo gets the platform's fixtures (real Kafka and Postgres)."""

pytest_plugins = ["clearway.shared.testing.fixtures"]
