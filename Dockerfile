# Build: docker build -t meshprobe .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/meshprobe

# Runtime: distroless (glibc, CA bundle, no shell), non-root. ICMP needs CAP_NET_RAW (added in
# the DaemonSet) or the pod sysctl net.ipv4.ping_group_range covering this GID.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/meshprobe /usr/local/bin/meshprobe
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/meshprobe"]
CMD ["agent"]
