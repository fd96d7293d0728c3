# Tollgate: multi-stage build. The runtime image holds only the binary (migrations and the
# admin UI are embedded) and runs as an unprivileged user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY admin-ui ./admin-ui
RUN cargo build --release --locked --bin tollgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/tollgate --create-home tollgate \
 && install -d -o tollgate -g tollgate -m 0700 /var/lib/tollgate/data
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
USER tollgate
WORKDIR /var/lib/tollgate
ENV TOLLGATE_DATA_DIR=/var/lib/tollgate/data \
    TOLLGATE_PROXY_LISTEN=0.0.0.0:8080 \
    TOLLGATE_ADMIN_LISTEN=0.0.0.0:8081
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve"]
