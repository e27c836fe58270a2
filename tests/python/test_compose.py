"""docker-compose.yml, checked where no container engine runs: the file is read as Compose
reads it (YAML with merge keys), every node's and the publisher's command is given to the real
binary, and the Mosquitto and Grafana files it mounts say what durability and Grafana need.
Nothing here connects to the compose network's addresses."""
import ipaddress
import json
import pathlib
import subprocess

import yaml

from mqttnode import mosquitto
from pgnode import MINITRUE_BIN, start_then_stop

ROOT = pathlib.Path(__file__).resolve().parents[2]
NODES = ["node1", "node2", "node3"]


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def resolved(command):
    """The node configuration `minitrue <command>` would run with."""
    out = subprocess.run([MINITRUE_BIN, *command, "--print-config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_three_nodes_join_one_seed_with_their_own_addresses_and_volumes():
    services = compose()["services"]
    assert {"mosquitto", "grafana", "publisher", *NODES} <= set(services)
    subnet = ipaddress.ip_network(compose()["networks"]["minitrue"]["ipam"]["config"][0]["subnet"])
    seed_ip = services["node1"]["networks"]["minitrue"]["ipv4_address"]
    configs = {}
    for name in NODES:
        service = services[name]
        assert service["build"] == "." and service["depends_on"] == ["mosquitto"], name
        config = resolved(service["command"])
        configs[name] = config
        ip = service["networks"]["minitrue"]["ipv4_address"]
        assert ipaddress.ip_address(ip) in subnet
        assert config["node_id"] == name
        assert config["listen"] == "0.0.0.0" and config["advertise_address"] == ip
        assert config["broker"] == "mqtt://mosquitto:1883"
        assert config["replication_factor"] == 3 and config["write_quorum"] == 2
        assert config["seeds"] == ([] if name == "node1" else [f"{seed_ip}:{configs['node1']['gossip_port']}"])
        # The data directory is the node's own volume; published ports reach the defaults.
        assert [v.split(":")[1] for v in service["volumes"]] == [config["data_dir"]]
        container_ports = {int(p.split(":")[1]) for p in service["ports"]}
        assert container_ports == {config["http_port"], config["pg_port"], config["flight_port"]}
    host_ports = [p.split(":")[0] for name in NODES for p in services[name]["ports"]]
    assert len(host_ports) == len(set(host_ports)), "two nodes publish the same host port"
    volumes = [services[name]["volumes"][0].split(":")[0] for name in NODES]
    assert len(set(volumes)) == 3 and set(volumes) <= set(compose()["volumes"]), volumes


def test_mosquitto_keeps_what_a_down_node_has_not_received():
    services = compose()["services"]
    mount = next(v for v in services["mosquitto"]["volumes"] if v.endswith("mosquitto.conf:ro"))
    conf = {}
    for line in (ROOT / mount.split(":")[0]).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    assert conf["listener"] == "1883"
    assert conf["persistence"] == "true", "queued messages must survive a broker restart"
    assert any(v.startswith("mosquitto-data:") for v in services["mosquitto"]["volumes"])
    assert int(conf["max_queued_messages"]) >= 100_000, "the default 1000 drops a down node's messages"
    assert conf["persistent_client_expiration"].endswith("d")
    assert conf["queue_qos0_messages"] == "false"


def test_the_publisher_command_runs_against_a_real_broker(tmp_path):
    command = compose()["services"]["publisher"]["command"]
    assert command[0] == "publish"
    with mosquitto(tmp_path) as broker:
        local = [f"mqtt://127.0.0.1:{broker}" if arg == "mqtt://mosquitto:1883" else arg for arg in command]
        assert local != command, "the publisher talks to the mosquitto service"
        out = subprocess.run([MINITRUE_BIN, *local, "--count", "3"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "published" in out.stdout, out.stdout


def test_grafana_is_provisioned_with_the_postgres_data_source_on_a_node():
    services = compose()["services"]
    grafana = services["grafana"]
    mount = next(v for v in grafana["volumes"] if "provisioning" in v)
    host, container = mount.split(":")[:2]
    assert container == "/etc/grafana/provisioning"
    [source] = yaml.safe_load((ROOT / host / "datasources" / "minitrue.yaml").read_text())["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    node, port = source["url"].split(":")
    assert node in NODES and int(port) == resolved(services[node]["command"])["pg_port"]
    assert source["jsonData"]["database"] == "minitrue"
    assert source["jsonData"]["sslmode"] == "disable"
    # Grafana logs in as a reader the nodes create at their first start.
    users = {line.split()[0]: line.split()[1] for line in compose()["configs"]["minitrue-users"]["content"].splitlines() if line.strip()}
    assert users == {"admin": "admin", source["user"]: "reader"}, users
    assert source["secureJsonData"]["password"] == "$GRAFANA_READER_PASSWORD"
    assert "GRAFANA_READER_PASSWORD" in grafana["environment"]


def test_nodes_start_with_authentication_on(tmp_path):
    services = compose()["services"]
    for name in NODES:
        command = services[name]["command"]
        config = resolved(command)
        target = services[name]["configs"][0]["target"]
        assert config["bootstrap_users"] == target, name
    # The node's first start with such a file creates the users, then listens beyond loopback.
    users = tmp_path / "users"
    users.write_text("admin admin first-admin-pw\ngrafana reader reader-pw\n")
    local = [MINITRUE_BIN, "serve", "--data-dir", str(tmp_path / "data"), "--bootstrap-users", str(users),
             "--listen", "0.0.0.0", "--advertise-address", "127.0.0.1", "--pg-port", "0", "--http-port", "0",
             "--mqtt-port", "0", "--flight-port", "0", "--gossip-port", "0"]
    output = start_then_stop(local, tmp_path / "ready.json")
    assert "created admin (admin), grafana (reader)" in output, output
    listed = subprocess.run([MINITRUE_BIN, "user", "list", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True).stdout
    assert "admin\tadmin" in listed and "grafana\treader" in listed
    assert "first-admin-pw" not in (tmp_path / "data" / "users.json").read_text()


def test_the_image_builds_the_binary_the_services_run():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "cargo build --release -p minitrue" in dockerfile
    assert 'ENTRYPOINT ["minitrue"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored
