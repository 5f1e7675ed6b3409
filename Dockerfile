# meshprobe: multi-stage build, the binary only on a distroless runtime, non-root.
#   docker build -t meshprobe:0.1.0 .
# (No Docker engine runs on the development machines: this file is kept plain and is not
# built by the test suite.)

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: every workspace member as an
# empty stub, built once.
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates/core/Cargo.toml crates/core/
COPY crates/diagnosis/Cargo.toml crates/diagnosis/
COPY crates/probe/Cargo.toml crates/probe/
COPY crates/server/Cargo.toml crates/server/
COPY crates/lab/Cargo.toml crates/lab/
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for c in core diagnosis probe server lab; do mkdir -p crates/$c/src && touch crates/$c/src/lib.rs; done \
    && cargo build --release --locked && rm -rf src crates/*/src
COPY src ./src
COPY crates ./crates
RUN touch src/main.rs src/lib.rs crates/*/src/lib.rs \
    && cargo build --release --locked \
    && strip target/release/meshprobe
# CAP_NET_RAW as a file capability: a non-root process gets raw ICMP sockets only this way, when the pod adds NET_RAW to its bounding set and allows
# privilege escalation (see deploy/base/daemonset.yaml). Permitted only ("+p", not "+ep"):
# the agent raises it into its effective set itself (crates/probe/src/caps.rs), so the binary still runs
# where the bounding set lacks it (deploy/components/restricted: a "+ep" binary fails at exec
# with EPERM there); then it uses ICMP datagram sockets (net.ipv4.ping_group_range) for
# echoes and path-MTU discovery, with the same results. tests/caps.rs checks both with this very line.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libcap2-bin \
    && setcap cap_net_raw+p target/release/meshprobe

# glibc and libgcc (the binary links them dynamically), no shell, no package manager;
# TLS is rustls, so no OpenSSL is needed.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/meshprobe /usr/local/bin/meshprobe
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/meshprobe"]
CMD ["agent"]
