# The `minitrue` binary in a small image: docker-compose.yml runs the nodes and the publisher
# from it. The web UI's built assets (frontend/dist) are committed and embedded at build time.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p minitrue && cp target/release/minitrue /usr/local/bin/minitrue

FROM debian:bookworm-slim
# openssl: docker-compose.yml's certs service makes the cluster's certificates with it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates openssl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/minitrue /usr/local/bin/minitrue
# HTTP, Postgres, Flight, gossip (UDP), embedded MQTT.
EXPOSE 8080 5432 50051 9000/udp 1883
ENTRYPOINT ["minitrue"]
CMD ["serve", "--listen", "0.0.0.0", "--advertise-address", "127.0.0.1"]
