#!/bin/sh
# Certificates for docker-compose.yml's cluster, made on the first start: a CA, and for each
# node a certificate naming its service name (what clients such as Grafana verify) and its
# fixed IP (what the other nodes verify). The CA's key is deleted once they are signed.
# Also the cluster secret the nodes share (cluster.secret, readable by root only): only
# nodes holding it gossip with them and call them.
#   make-certs.sh OUTPUT_DIR
set -eu
out="$1"
cd "$out"
umask 077
if [ ! -s cluster.secret ]; then
    openssl rand -base64 33 > cluster.secret.new
    mv cluster.secret.new cluster.secret
fi
if [ -f node3.pem ]; then exit 0; fi
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=MiniTrue compose CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
for n in 1 2 3; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=node$n" -keyout "node$n.key" \
        -out "node$n.csr" 2>/dev/null
    printf 'subjectAltName=DNS:node%s,DNS:localhost,IP:172.28.0.1%s,IP:127.0.0.1\n' "$n" "$n" \
        > "node$n.ext"
    openssl x509 -req -in "node$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
        -extfile "node$n.ext" -out "node$n.pem" 2>/dev/null
done
rm -f ca.key ca.srl ./*.csr ./*.ext
# Clients (Grafana) read the CA; the keys stay the nodes' (root's) own.
chmod 644 ca.pem node1.pem node2.pem node3.pem
