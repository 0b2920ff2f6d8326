"""The embedded broker delivers every message whole, in order, while a producer and a consumer
work on the same folder at once. (The race it is built against, a consumer taking a message
file before its writer finished, is ruled out by construction: files appear by rename.)"""

from __future__ import annotations

import threading
from pathlib import Path

from kombu import Connection, Exchange, Queue

import arena.broker  # noqa: F401 - registers the transport

MESSAGES = 400


def _connection(folder: Path) -> Connection:
    queue_folder = folder / "queue"
    queue_folder.mkdir(parents=True, exist_ok=True)
    return Connection(
        "arenafs://",
        transport_options={
            "data_folder_in": str(queue_folder),
            "data_folder_out": str(queue_folder),
            "store_processed": False,
        },
    )


def test_embedded_broker_when_consumer_polls_while_producing_then_every_message_arrives_whole(
    tmp_path: Path,
) -> None:
    queue = Queue("cycles", Exchange("cycles", type="direct"), routing_key="cycles")
    payload = {"symbol": "BTCUSDT", "pad": "x" * 20_000}  # large enough to take time to write
    received: list[dict] = []
    errors: list[BaseException] = []

    def produce() -> None:
        with _connection(tmp_path) as connection:
            producer = connection.Producer(serializer="json")
            for n in range(MESSAGES):
                producer.publish(
                    {**payload, "n": n},
                    exchange=queue.exchange,
                    routing_key="cycles",
                    declare=[queue],
                )

    def consume() -> None:
        try:
            with _connection(tmp_path) as connection:
                simple = connection.SimpleQueue(queue)
                while len(received) < MESSAGES:
                    message = simple.get(block=True, timeout=10)
                    received.append(message.payload)
                    message.ack()
        except BaseException as exc:
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(timeout=60)
    consumer.join(timeout=60)

    assert errors == []
    assert sorted(m["n"] for m in received) == list(range(MESSAGES))
    assert all(m["pad"] == payload["pad"] for m in received)
