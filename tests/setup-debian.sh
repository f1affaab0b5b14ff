#!/bin/sh
# Install the Debian packages the test suite runs for real (called by `make test`).
#
# - rsyslog + rsyslog-gnutls: the central collector of tests/e2e/test_forward*.py
#   (TCP input with octet counting, TLS through GnuTLS). Each test starts its own
#   rsyslogd on 127.0.0.1 with its own config; the system service is never wanted.
#
# - syslog-ng-core: a second real collector (its RFC 5424 parser), for
#   tests/e2e/test_forward_trust.py. The package conflicts with rsyslog, so it is
#   not installed: `apt-get download` fetches it (and the libraries it needs that
#   rsyslog does not pull in) and `dpkg-deb -x` unpacks them under
#   tests/.peers/syslog-ng/, from where the tests run the binary.
#
# Idempotent and quiet when everything is present; does nothing when not root or
# without apt-get (the tests that need a package then skip and say why).
set -eu

PACKAGES="rsyslog rsyslog-gnutls"
PEERS="$(cd "$(dirname "$0")" && pwd)/.peers"
SYSLOG_NG_DEBS="syslog-ng-core libivykis0 libnet1 libpcre3 libwrap0"

# Unpack syslog-ng (and its libraries) under $PEERS/syslog-ng once.
unpack_syslog_ng() {
    [ ! -x "$PEERS/syslog-ng/usr/sbin/syslog-ng" ] || return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "setup-debian: not unpacking syslog-ng (needs root and apt-get); its tests skip" >&2
        return 0
    fi
    tmp=$(mktemp -d)
    # shellcheck disable=SC2086  # one word per package
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root $SYSLOG_NG_DEBS \
            >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 \
            && apt-get download -q -o APT::Sandbox::User=root $SYSLOG_NG_DEBS >/dev/null 2>&1; }); then
        echo "setup-debian: could not download syslog-ng-core; its tests skip" >&2
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$PEERS/syslog-ng.new"
    mkdir -p "$PEERS/syslog-ng.new"
    for deb in "$tmp"/*.deb; do
        dpkg-deb -x "$deb" "$PEERS/syslog-ng.new"
    done
    rm -rf "$tmp" "$PEERS/syslog-ng"
    mv "$PEERS/syslog-ng.new" "$PEERS/syslog-ng"  # whole or not at all
}
unpack_syslog_ng

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -n "$missing" ] || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-debian: not installing$missing (needs root and apt-get); tests that need it skip" >&2
    exit 0
fi

# Installing rsyslog would start the system service (on /dev/log): forbid any
# service start for the duration (policy-rc.d(8): exit 101 = action forbidden).
policy=/usr/sbin/policy-rc.d
own_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=yes
fi
cleanup() {
    if [ "$own_policy" = yes ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

echo "setup-debian: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
install() {
    # shellcheck disable=SC2086  # one word per package
    apt-get install -y -q --no-install-recommends $missing >/dev/null
}
if ! install; then
    # a clean machine may have no package lists yet
    apt-get update -q >/dev/null
    install
fi

# Should a service manager have started it anyway, stop the system rsyslogd by
# its own pid file: nothing but the tests' own collectors may run.
for pidfile in /run/rsyslogd.pid /var/run/rsyslogd.pid; do
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    fi
done
