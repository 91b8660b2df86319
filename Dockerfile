# statehouse: build with the Rust toolchain, run on a slim Debian with only CA certificates.
# docker build -t statehouse .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin statehouse \
    && rm -rf src
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin statehouse \
    && cp target/release/statehouse /usr/local/bin/statehouse

FROM debian:12.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20250419~deb12u2 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin statehouse \
    && install -d -o 10001 -g 10001 /var/lib/statehouse
COPY --from=build /usr/local/bin/statehouse /usr/local/bin/statehouse
USER 10001:10001
ENV STATEHOUSE_LISTEN=0.0.0.0:8080 \
    STATEHOUSE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["statehouse", "healthcheck"]
ENTRYPOINT ["statehouse"]
CMD ["serve"]
