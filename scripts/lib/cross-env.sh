# shellcheck shell=bash
# Sourced by scripts/cross-build and scripts/package: the one table of ARM targets and the
# environment that points cargo and the cc crate at Debian's cross toolchains. Only
# environment variables: a committed .cargo/config.toml would change native builds too.

# target triple (or short name) -> target triple
rust_target() {
    case "$1" in
    aarch64 | arm64 | aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
    armv7 | armhf | armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
    amd64 | x86_64 | x86_64-unknown-linux-gnu) echo x86_64-unknown-linux-gnu ;;
    *) return 1 ;;
    esac
}
# target triple -> Debian's GNU triple (cross compiler prefix, sysroot /usr/<triple>)
gnu_triple() {
    case "$1" in
    aarch64-*) echo aarch64-linux-gnu ;;
    armv7-*) echo arm-linux-gnueabihf ;;
    x86_64-*) echo x86_64-linux-gnu ;;
    esac
}
# target triple -> Debian architecture
deb_arch() {
    case "$1" in aarch64-*) echo arm64 ;; armv7-*) echo armhf ;; x86_64-*) echo amd64 ;; esac
}
# target triple -> qemu-user architecture
qemu_arch() {
    case "$1" in aarch64-*) echo aarch64 ;; armv7-*) echo arm ;; esac
}
# Debian packages the cross toolchain of a target needs (none for the host).
cross_packages() {
    local g
    g=$(gnu_triple "$1")
    [ "$1" = x86_64-unknown-linux-gnu ] && return 0
    command -v "$g-gcc" >/dev/null 2>&1 || echo "gcc-$g"
    [ -e "/usr/$g/lib/crt1.o" ] || echo "libc6-dev-$(deb_arch "$1")-cross"
}
# Exports linker, C compiler and archiver for cargo and the cc crate (ring's C and
# assembly), and the qemu runner for `cargo test`.
export_cross_env() {
    local t=$1 g T u
    [ "$t" = x86_64-unknown-linux-gnu ] && return 0
    g=$(gnu_triple "$t")
    T=$(echo "$t" | tr 'a-z-' 'A-Z_')
    u=$(echo "$t" | tr '-' '_')
    export "CARGO_TARGET_${T}_LINKER=$g-gcc"
    export "CC_${u}=$g-gcc" "AR_${u}=$g-ar"
    export "CARGO_TARGET_${T}_RUNNER=qemu-$(qemu_arch "$t") -L /usr/$g"
}
