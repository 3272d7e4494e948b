# Penny's image: a release build on Debian (the production profile: see Cargo.toml), then only
# what the binary needs on top of scratch (its shared libraries, CA certificates for
# verify-full, and dash as /bin/sh, because Heroku runs CMD and the release command through a
# shell). About 14 MB in all.

FROM rust:1.95-bookworm AS build
WORKDIR /penny

# The dependencies, in a layer of their own: it is rebuilt only when Cargo.toml, Cargo.lock,
# .cargo/config.toml or build.rs change, so a change to src/ alone rebuilds only Penny itself.
# (benches/ comes along because Cargo.toml names a benchmark in it, and tests/common/tools.rs
# because build.rs includes it; neither is built into Penny.)
COPY Cargo.toml Cargo.lock build.rs penny.sql ./
COPY .cargo .cargo
COPY benches benches
COPY tests/common/tools.rs tests/common/tools.rs
RUN mkdir assets src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --profile production --locked \
    && rm src/main.rs src/lib.rs

COPY assets assets
COPY src src
# touch: the sources copied in may be older than the placeholder build above.
RUN touch src/main.rs src/lib.rs \
    && cargo build --profile production --locked \
    && strip target/production/penny

# The runtime file tree: the binary, the libraries it and dash link to, the loader, CA
# certificates, and a user to run as.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p /rootfs/usr/local/bin /rootfs/bin /rootfs/etc/ssl/certs \
    && cp target/production/penny /rootfs/usr/local/bin/penny \
    && cp /bin/dash /rootfs/bin/sh \
    && { ldd target/production/penny; ldd /bin/dash; } | grep -o '/[^ ]*' | sort -u \
        | xargs -I{} cp -L --parents {} /rootfs/ \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && echo 'penny:x:10001:10001:Penny:/nonexistent:/sbin/nologin' > /rootfs/etc/passwd \
    && echo 'penny:x:10001:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs /
ENV PATH=/usr/local/bin:/bin \
    PORT=8000
USER 10001:10001
EXPOSE 8000
# Exec form: Penny is PID 1 and gets SIGTERM itself (on Heroku, dash execs it in place).
CMD ["penny"]
