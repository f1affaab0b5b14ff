#!/bin/sh
# Run trio-logd as a `cmd:` target of an external load harness that sets
# $SOCK (the ingest socket to create), $OUTDIR (where records must land) and
# $RUNDIR (scratch), e.g.:
#   run.sh 'cmd:exec /path/to/checkout/bench/harness_target.sh' throughput
# Limits are generous: this measures the daemon, not its policies.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cat > "$RUNDIR/logd.toml" <<TOML
[daemon]
socket = "$SOCK"
control_socket = "$RUNDIR/ctl.sock"
log_dir = "$OUTDIR/log"
max_connections = 100000
[store]
max_file_bytes = 100000000000
max_bytes = 1000000000000
keep_free_bytes = 0
[limits.default]
rate_messages = 100000000
burst_messages = 100000000
rate_bytes = 100000000000
burst_bytes = 100000000000
quota_bytes = 1000000000000
max_connections = 100000
TOML
exec "$here/.venv/bin/python" -m trio_logd serve --config "$RUNDIR/logd.toml"
