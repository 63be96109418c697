"""Each node of the demo is published by one MQTT client only. The broker's nodes' listener
gives every connection of a node's user the same client id, its user name
(use_username_as_clientid), so a second client of the same node ends the first one's
connection, and a clean one empties the first one's persistent session: a live agent and
the lightweight publisher must never share a node."""

from __future__ import annotations

from urbanpulse.demo.live import choose_live, lightweight_nodes
from urbanpulse.simulate import City


def test_no_live_node_is_also_published_by_the_lightweight_publisher() -> None:
    city = City.load()
    live = choose_live(city)
    light, unreported = lightweight_nodes(city.nodes, live)
    live_nodes = {n.key for n in live}
    assert live_nodes
    assert not live_nodes & set(light)
    # every other node of the city is published
    assert set(light) == {(n.site, n.node) for n in city.nodes} - live_nodes
    # a live node's sensors without a live device are reported by nobody, and said so
    live_sensors = {(n.site, n.node, s.id) for n in live for s in n.sensors}
    expected = {(n.site, n.node, s.id) for n in city.nodes if (n.site, n.node) in live_nodes
                for s in n.sensors} - live_sensors
    assert set(unreported) == expected
