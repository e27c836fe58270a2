"""docker-compose.yml, checked where no container engine runs: the file is read as Compose
reads it (YAML with merge keys), every node's and the publisher's command is given to the real
binary with the container's paths mapped to local files, the init scripts it runs
(certificates, Mosquitto's password file) run here with openssl and mosquitto_passwd, and a
real Mosquitto with the mounted configuration admits the compose logins only. Nothing here
connects to the compose network's addresses."""
import ipaddress
import json
import os
import pathlib
import re
import subprocess

import paho.mqtt.client as mqtt
import yaml

from mqttnode import Node, free_port, port_open, wait_until
from pgnode import MINITRUE_BIN, start_then_stop

ROOT = pathlib.Path(__file__).resolve().parents[2]
NODES = ["node1", "node2", "node3"]


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


# What the compose file's `${VAR:?…}` settings are given in these tests.
ENVIRONMENT = {"MINITRUE_ADMIN_PASSWORD": "compose-admin-pw", "GRAFANA_READER_PASSWORD": "compose-reader-pw",
               "MQTT_NODE_PASSWORD": "compose-node-pw", "MQTT_SENSOR_PASSWORD": "compose-sensor-pw"}


def interpolated(text):
    """`text` with Compose's `${VAR}`, `${VAR:?message}` and `${VAR:-default}` filled in."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: ENVIRONMENT[m.group(1)], text)


def config_file(name, directory):
    """The compose `configs` entry `name`, written to a file in `directory`."""
    path = directory / name
    path.write_text(interpolated(str(compose()["configs"][name]["content"])))
    return path


def container_paths(tmp_path):
    """Local stand-ins for the files the containers mount (made as the compose services make
    them), keyed by container path."""
    tls = tmp_path / "tls"
    if not tls.exists():
        tls.mkdir()
        subprocess.run(["sh", str(ROOT / "deploy/tls/make-certs.sh"), str(tls)], check=True, timeout=120)
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    paths = {f"/tls/{f.name}": f for f in tls.iterdir()}
    paths["/run/minitrue/users"] = config_file("minitrue-users", configs)
    paths["/data"] = tmp_path / "data"
    return paths


def localised(command, tmp_path, password_config=None):
    """`command` with container paths mapped to local files; `password_config` names the
    compose config mounted at /run/minitrue/mqtt-password."""
    paths = container_paths(tmp_path)
    if password_config:
        paths["/run/minitrue/mqtt-password"] = config_file(password_config, tmp_path / "configs")
    return [str(paths.get(arg, arg)) for arg in command]


def resolved(command, tmp_path):
    """The settings `minitrue <command>` would run with (`--print-config` prints them by
    section; the names are unique across sections)."""
    local = localised(command, tmp_path, "mqtt-node-password")
    out = subprocess.run([MINITRUE_BIN, *local, "--print-config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {key: value for section in json.loads(out.stdout).values() for key, value in section.items()}


def test_three_nodes_join_one_seed_with_their_own_addresses_and_volumes(tmp_path):
    services = compose()["services"]
    assert {"mosquitto", "grafana", "publisher", *NODES} <= set(services)
    subnet = ipaddress.ip_network(compose()["networks"]["minitrue"]["ipam"]["config"][0]["subnet"])
    seed_ip = services["node1"]["networks"]["minitrue"]["ipv4_address"]
    configs = {}
    for name in NODES:
        service = services[name]
        assert service["build"] == "." and set(service["depends_on"]) == {"mosquitto", "certs"}, name
        assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully"
        config = resolved(service["command"], tmp_path)
        configs[name] = config
        ip = service["networks"]["minitrue"]["ipv4_address"]
        assert ipaddress.ip_address(ip) in subnet
        assert config["node_id"] == name
        assert config["listen"] == "0.0.0.0" and config["advertise_address"] == ip
        assert config["broker"] == "mqtt://mosquitto:1883"
        assert config["replication_factor"] == 3 and config["write_quorum"] == 2
        assert config["seeds"] == ([] if name == "node1" else [f"{seed_ip}:{configs['node1']['gossip_port']}"])
        # The broker login comes from a mounted file and is never shown.
        assert config["login"] == "minitrue / ********", config["login"]
        assert ENVIRONMENT["MQTT_NODE_PASSWORD"] not in json.dumps(config)
        # The nodes share the secret certs makes; the printout says where from, not what.
        assert config["secret"] == f"(set, from {container_paths(tmp_path)['/tls/cluster.secret']})", config["secret"]
        assert container_paths(tmp_path)["/tls/cluster.secret"].read_text().strip() not in json.dumps(config)
        # TLS on every door with the node's own certificate, naming its fixed IP for its peers.
        assert pathlib.Path(config["tls_cert"]).name == f"{name}.pem"
        san = subprocess.run(["openssl", "x509", "-in", config["tls_cert"], "-noout", "-ext", "subjectAltName"],
                             capture_output=True, text=True, check=True).stdout
        assert f"IP Address:{ip}" in san and f"DNS:{name}" in san, san
        # The data directory is the node's own volume; published ports reach the defaults.
        assert service["volumes"][0].split(":")[1] == "/data"
        assert service["volumes"][1] == "minitrue-tls:/tls:ro"
        container_ports = {int(p.split(":")[1]) for p in service["ports"]}
        assert container_ports == {config["http_port"], config["pg_port"], config["flight_port"]}
    host_ports = [p.split(":")[0] for name in NODES for p in services[name]["ports"]]
    assert len(host_ports) == len(set(host_ports)), "two nodes publish the same host port"
    volumes = [services[name]["volumes"][0].split(":")[0] for name in NODES]
    assert len(set(volumes)) == 3 and set(volumes) <= set(compose()["volumes"]), volumes
    # The certificates are made once, where the nodes and Grafana read them.
    certs = services["certs"]
    assert certs["entrypoint"][:2] == ["sh", "/deploy/make-certs.sh"] and "minitrue-tls:/tls" in certs["volumes"]


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


def compose_mosquitto_conf(tmp_path, port):
    """deploy/mosquitto/mosquitto.conf as the broker container reads it, with its paths and
    port mapped to local ones (and Mosquitto kept from dropping to a user that cannot read a
    pytest directory)."""
    services = compose()["services"]
    logins = config_file("mqtt-logins", tmp_path)
    auth = services["mosquitto-auth"]
    script = next(v.split(":")[0] for v in auth["volumes"] if v.endswith(":/mosquitto/config:ro"))
    assert auth["entrypoint"][:2] == ["sh", "/mosquitto/config/make-passwd.sh"]
    passwd = tmp_path / "passwd"
    subprocess.run(["sh", str(ROOT / script / "make-passwd.sh"), str(logins), str(passwd)], check=True, timeout=60)
    assert "compose-node-pw" not in passwd.read_text()
    mounts = dict(v.split(":")[1::-1] for v in services["mosquitto"]["volumes"] if v.startswith("./"))
    conf = (ROOT / mounts["/mosquitto/config/mosquitto.conf"]).read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/auth/passwd", str(passwd))
    conf = conf.replace("/mosquitto/config/acl", str(ROOT / mounts["/mosquitto/config/acl"]))
    (tmp_path / "mosquitto-data").mkdir()
    conf = conf.replace("/mosquitto/data/", f"{tmp_path / 'mosquitto-data'}/")
    conf += f"user {os.environ.get('USER', 'root')}\n"
    path = tmp_path / "mosquitto.conf"
    path.write_text(conf)
    return path


def test_mosquitto_admits_the_compose_logins_only_and_a_node_reads_what_sensors_publish(tmp_path):
    services = compose()["services"]
    port = free_port()
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(compose_mosquitto_conf(tmp_path, port))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = None
    try:
        wait_until("mosquitto", lambda: port_open(port))
        local_url = lambda command: [f"mqtt://127.0.0.1:{port}" if a == "mqtt://mosquitto:1883" else a for a in command]

        # node1 as compose runs it: its broker login, its certificate, the bootstrap users.
        command = local_url(localised(services["node1"]["command"], tmp_path, "mqtt-node-password"))
        data = command.index("--data-dir")
        del command[data:data + 2]
        node = Node(tmp_path / "node1", *command[1:], secret=None).start()  # the file is its secret

        # The publisher as compose runs it, with the sensors' login.
        publisher = local_url(localised(services["publisher"]["command"], tmp_path, "mqtt-sensor-password"))
        assert publisher != services["publisher"]["command"], "the publisher talks to the mosquitto service"
        out = subprocess.run([MINITRUE_BIN, *publisher, "--count", "3"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "published" in out.stdout, out.stdout

        # Grafana's way in: the reader over TLS, checking node1's name against the compose CA.
        ca = container_paths(tmp_path)["/tls/ca.pem"]
        dsn = (f"host=node1 hostaddr=127.0.0.1 port={node.ports['postgres']} user=grafana dbname=minitrue "
               f"sslmode=verify-full sslrootcert={ca}")
        count = lambda: subprocess.run(["psql", dsn, "-XAtc", "SELECT count(*) FROM readings"], capture_output=True, text=True,
                                       env={**os.environ, "PGPASSWORD": ENVIRONMENT["GRAFANA_READER_PASSWORD"]}, timeout=60)
        wait_until("the sensors' points in node1", lambda: count().stdout.strip() == str(20 * 3 * 3), 60)

        # Anyone else is turned away by the broker.
        anonymous = subprocess.run([MINITRUE_BIN, "publish", "--broker", f"mqtt://127.0.0.1:{port}", "simulate", "--count", "1"],
                                   capture_output=True, text=True, timeout=60)
        assert anonymous.returncode != 0, anonymous.stdout
        refused = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stranger")
        client.username_pw_set("sensors", "wrong")
        client.on_connect = lambda _c, _u, _f, reason, _p: refused.append(reason)
        client.connect("127.0.0.1", port)
        client.loop_start()
        try:
            wait_until("CONNACK", lambda: refused, 20)
            assert refused[0].is_failure
        finally:
            client.loop_stop()
    finally:
        if node:
            node.stop()
        broker.kill()
        broker.wait()


def test_grafana_is_provisioned_with_the_postgres_data_source_on_a_node(tmp_path):
    services = compose()["services"]
    grafana = services["grafana"]
    mount = next(v for v in grafana["volumes"] if "provisioning" in v)
    host, container = mount.split(":")[:2]
    assert container == "/etc/grafana/provisioning"
    [source] = yaml.safe_load((ROOT / host / "datasources" / "minitrue.yaml").read_text())["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    node, port = source["url"].split(":")
    assert node in NODES and int(port) == resolved(services[node]["command"], tmp_path)["pg_port"]
    assert source["jsonData"]["database"] == "minitrue"
    # The node's certificate is verified, name included, with the CA the certs service made.
    assert source["jsonData"]["sslmode"] == "verify-full"
    assert source["jsonData"]["tlsConfigurationMethod"] == "file-path"
    ca = pathlib.PurePosixPath(source["jsonData"]["sslRootCertFile"])
    assert f"minitrue-tls:{ca.parent}:ro" in grafana["volumes"] and ca.name == "ca.pem"
    # Grafana logs in as a reader the nodes create at their first start.
    users = {line.split()[0]: line.split()[1] for line in compose()["configs"]["minitrue-users"]["content"].splitlines() if line.strip()}
    assert users == {"admin": "admin", source["user"]: "reader"}, users
    assert source["secureJsonData"]["password"] == "$GRAFANA_READER_PASSWORD"
    assert "GRAFANA_READER_PASSWORD" in grafana["environment"]


def test_nodes_start_with_authentication_on(tmp_path):
    services = compose()["services"]
    for name in NODES:
        command = services[name]["command"]
        config = resolved(command, tmp_path)
        assert {"source": "minitrue-users", "target": "/run/minitrue/users"} in services[name]["configs"], name
        assert config["bootstrap_users"] == str(container_paths(tmp_path)["/run/minitrue/users"]), name
    # The node's first start with such a file creates the users, then listens beyond loopback.
    users = tmp_path / "users"
    users.write_text("admin admin first-admin-pw\ngrafana reader reader-pw\n")
    local = [MINITRUE_BIN, "serve", "--data-dir", str(tmp_path / "data"), "--bootstrap-users", str(users),
             "--listen", "0.0.0.0", "--advertise-address", "127.0.0.1", "--pg-port", "0", "--http-port", "0",
             "--mqtt-port", "0", "--flight-port", "0", "--gossip-port", "0",
             "--cluster-secret-file", str(container_paths(tmp_path)["/tls/cluster.secret"])]
    output = start_then_stop(local, tmp_path / "ready.json")
    assert "created admin (admin), grafana (reader)" in output, output
    listed = subprocess.run([MINITRUE_BIN, "user", "list", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True).stdout
    assert "admin\tadmin" in listed and "grafana\treader" in listed
    assert "first-admin-pw" not in (tmp_path / "data" / "users.json").read_text()


def test_the_image_builds_the_binary_the_services_run():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "cargo build --release -p minitrue" in dockerfile
    assert 'ENTRYPOINT ["minitrue"]' in dockerfile
    # The certs service runs deploy/tls/make-certs.sh in this image.
    assert "openssl" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored
