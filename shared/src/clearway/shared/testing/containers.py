"""The test stack from containers (testcontainers), for machines with a Docker API.

``CLEARWAY_TEST_POSTGRES_IMAGE`` and ``CLEARWAY_TEST_KAFKA_IMAGE`` choose the images
(default: the official ``postgres:16`` and testcontainers' own Kafka image). A Kafka
image other than the default is run as the official ``apache/kafka`` image is
configured, through ``KAFKA_*`` variables, which the image built offline by
``deploy/containers/podman.sh`` (``localhost/clearway-kafka``) also understands; so
the same fixtures run against podman's Docker-compatible socket on a machine that
cannot pull any image (docs/running.md).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

__all__ = ["container_stack"]

#: how long a container may take to say it is ready
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _kafka(image: str | None) -> Iterator[str]:
    if image is None:
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as k:
            yield k.get_bootstrap_server()
        return
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    # The advertised address must be known before the broker starts: the same port
    # number inside the container and on the host's loopback.
    port = _free_port()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    container = DockerContainer(image)
    # published on the host's loopback only: docker-py's (address, port) form, which
    # with_bind_ports does not take
    ports: dict[str, Any] = container.ports
    ports[f"{port}/tcp"] = ("127.0.0.1", port)
    for name, value in env.items():
        container = container.with_env(name, value)
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=START_TIMEOUT_S)
        yield f"127.0.0.1:{port}"


@contextmanager
def container_stack() -> Iterator[tuple[str, str]]:
    """Postgres and Kafka in containers: ``(admin database URL, bootstrap servers)``."""
    from testcontainers.postgres import PostgresContainer

    pg_image = os.environ.get("CLEARWAY_TEST_POSTGRES_IMAGE", "postgres:16")
    with ExitStack() as stack:
        pg = stack.enter_context(PostgresContainer(pg_image, driver=None))
        bootstrap = stack.enter_context(_kafka(os.environ.get("CLEARWAY_TEST_KAFKA_IMAGE")))
        yield pg.get_connection_url(), bootstrap
