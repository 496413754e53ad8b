"""Every MQTT client the product builds sends small packets at once (``inspector.mqtt.make_client``).

paho leaves Nagle's algorithm on; then a result published right after the PUBACK of its trigger waited
for the broker's delayed ACK, and a triggered station answered no sooner than 41 ms after the trigger.
"""

import socket
import threading

from inspector.mqtt import MqttConfig, connect, make_client


def test_the_client_socket_has_nagle_off(mqtt_broker):
    cfg = MqttConfig(host=mqtt_broker.host, port=mqtt_broker.port, protocol=mqtt_broker.protocol)
    client = make_client(cfg, "nodelay-test")
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    connect(client, cfg)
    try:
        assert connected.wait(10), "no connection to the test broker"
        sock = client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.disconnect()
        client.loop_stop()
