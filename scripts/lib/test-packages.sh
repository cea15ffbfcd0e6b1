# shellcheck shell=bash
# Sourced by scripts/test and scripts/cross-build: installs the Debian packages the test
# suites drive when they are missing (as root, or through sudo). SKIP_INSTALL=1 only
# names them and fails.
# shellcheck source=scripts/lib/throwaway-pg.sh
. "$(dirname "${BASH_SOURCE[0]}")/throwaway-pg.sh"   # pg_bin
declare -F have >/dev/null || have() { command -v "$1" >/dev/null 2>&1; }
declare -F step >/dev/null || step() { printf '\n==> %s\n' "$*" >&2; }

install_test_packages() {
    local me=$1
    # --- Debian packages the tests drive ----------------------------------------------
    # postgresql: initdb/postgres/pg_ctl/psql/pg_isready and the `postgres` user (needed as
    # root); mosquitto: the broker and mosquitto_passwd; mosquitto-clients: mosquitto_pub and
    # mosquitto_sub; socat: pty pairs; openssl: throwaway TLS certificates; GStreamer and ffmpeg:
    # see the camera tests below. (coreutils' stdbuf and libc-bin's getent are essential.)
    local need_pkgs=() sudo=()
    { [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] && [ -x "$(pg_bin)/psql" ]; } || need_pkgs+=(postgresql)
    [ "$(id -u)" != 0 ] || getent passwd postgres >/dev/null || need_pkgs+=(postgresql)
    have mosquitto || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
    have mosquitto_pub && have mosquitto_sub || need_pkgs+=(mosquitto-clients)
    have socat || need_pkgs+=(socat)
    have openssl || need_pkgs+=(openssl)
    # systemd: systemd-analyze, systemd-sysusers, systemd-tmpfiles for scripts/check-units
    # (the units are checked, never run).
    have systemd-analyze || need_pkgs+=(systemd)
    # prometheus: promtool for scripts/check-monitoring; jq: the dashboards.
    have promtool || need_pkgs+=(prometheus)
    have jq || need_pkgs+=(jq)
    # help2man: the packages' man pages (scripts/test-package).
    have help2man || need_pkgs+=(help2man)
    # The camera tests: GStreamer's RTSP server under Debian's /usr/bin/python3 (python3-gi and
    # the GstRtspServer typelib), x264 (ugly) and x265 (bad) encoders, the RTP payloaders
    # (good), and ffmpeg's ffprobe/ffmpeg to check clips.
    [ -x /usr/bin/python3 ] || need_pkgs+=(python3)
    [ -e /usr/lib/x86_64-linux-gnu/girepository-1.0/GstRtspServer-1.0.typelib ] \
        || ls /usr/lib/*/girepository-1.0/GstRtspServer-1.0.typelib >/dev/null 2>&1 \
        || need_pkgs+=(gir1.2-gst-rtsp-server-1.0)
    /usr/bin/python3 -c 'import gi' 2>/dev/null || need_pkgs+=(python3-gi)
    have gst-inspect-1.0 || need_pkgs+=(gstreamer1.0-tools)
    if have gst-inspect-1.0; then
        gst-inspect-1.0 videotestsrc >/dev/null 2>&1 || need_pkgs+=(gstreamer1.0-plugins-base)
        gst-inspect-1.0 rtph264pay >/dev/null 2>&1 || need_pkgs+=(gstreamer1.0-plugins-good)
        gst-inspect-1.0 x264enc >/dev/null 2>&1 || need_pkgs+=(gstreamer1.0-plugins-ugly)
        gst-inspect-1.0 x265enc >/dev/null 2>&1 || need_pkgs+=(gstreamer1.0-plugins-bad)
    else
        need_pkgs+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad)
    fi
    have ffprobe && have ffmpeg || need_pkgs+=(ffmpeg)
    if [ ${#need_pkgs[@]} -gt 0 ]; then
        # shellcheck disable=SC2207 # package names have no spaces
        need_pkgs=($(printf '%s\n' "${need_pkgs[@]}" | sort -u))
        if [ "${SKIP_INSTALL:-}" = 1 ]; then
            echo "$me: missing Debian packages: ${need_pkgs[*]} (SKIP_INSTALL=1)" >&2
            return 1
        fi
            if [ "$(id -u)" != 0 ]; then
            have sudo || { echo "$me: as root, run: apt-get install ${need_pkgs[*]}" >&2; return 1; }
            sudo=(sudo)
        fi
        step "installing Debian packages: ${need_pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        # The postgresql package may start its own cluster on 5432; the tests never use it.
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    fi
}
