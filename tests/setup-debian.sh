#!/bin/sh
# Install the Debian packages the test suite runs for real (called by `make test`).
#
# - rsyslog + rsyslog-gnutls: the central collector of tests/e2e/test_forward*.py
#   (TCP input with octet counting, TLS through GnuTLS). Each test starts its own
#   rsyslogd on 127.0.0.1 with its own config; the system service is never wanted.
#
# Idempotent and quiet when everything is present; does nothing when not root or
# without apt-get (the tests that need a package then skip and say why).
set -eu

PACKAGES="rsyslog rsyslog-gnutls"

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
