# Multi-stage build: a Rust builder, then a slim non-root runtime that also
# works with a read-only root filesystem (everything Tessera writes lives
# under /var/lib/tessera, a volume).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `dist`: fat LTO and one codegen unit, the build the load benchmark measures.
RUN cargo build --profile dist --locked --bin tessera

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tessera tessera \
 && mkdir -p /var/lib/tessera/admin \
 && chown -R tessera /var/lib/tessera
COPY --from=build /src/target/dist/tessera /usr/local/bin/tessera
USER 10001
WORKDIR /var/lib/tessera
VOLUME ["/var/lib/tessera"]
ENV TESSERA_SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["tessera"]
CMD ["serve"]
