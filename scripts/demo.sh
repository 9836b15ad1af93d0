#!/usr/bin/env bash
# demo.sh — the local demo: set the machine up, install cgv, (re)start cgvd on
# this host as a cluster of one, apply examples/demo.yaml (two VMs booted from
# the project's guest image) and show their status and the sample network
# function answering over UDP. Run it again at any time: restarting cgvd never
# disturbs running VMs, and re-applying an unchanged spec changes nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh"

log() { printf '\ndemo: %s\n' "$*"; }

ninja -C build install >/dev/null
hash -r
PIDFILE=/run/cgv/cgvd.pid
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "restarting cgvd (the VMs keep running)"
    kill -TERM "$(cat "$PIDFILE")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$PIDFILE" 2>/dev/null || echo 0)" 2>/dev/null || break; sleep 0.1; done
fi
mkdir -p /run/cgv /var/log/cgv
cgvd --daemon --pidfile "$PIDFILE" --log-file /var/log/cgv/cgvd.log
log "cgvd is up: $(cgv health | head -1)"

log "cgv apply -f examples/demo.yaml --wait"
cgv apply -f examples/demo.yaml --wait --timeout 240

# A demo left by an older spec: its VMs take the new one at their next start.
# Restart them one at a time (an active hands its role to the standby first).
pending=$(cgv status demo --json | python3 -c 'import json,sys
for v in json.load(sys.stdin)["vms"]:
    if v.get("restart_pending"): print(v["name"])')
for vm in $pending; do
    log "restarting $vm: the spec changed since it started"
    cgv vm stop "$vm" --timeout 30
    cgv vm start "$vm"
    cgv apply -f examples/demo.yaml --wait --timeout 240 >/dev/null
done

log "cgv status"
cgv status

for vm in $(cgv status --json | python3 -c 'import json,sys
for s in json.load(sys.stdin)["services"]:
    for v in s["vms"]:
        if s["name"] == "demo": print(v["addresses"][0])'); do
    log "cgv-udpping -c 3 $vm   (the sample network function inside the VM)"
    cgv-udpping -c 3 "$vm"
done
log "cgv-udpping -c 3 10.77.0.50   (the virtual IP: the active VM answers)"
cgv-udpping -c 3 10.77.0.50

cat <<'EOT'

demo: done. Things to try next:
  cgv events                 what happened, with timestamps
  cgv vm pause demo-0        pause / resume / save / restore / reboot / stop / start / destroy
  cgv top                    live CPU, memory, network, agent round trip, HA role per VM
  kill -9 <QEMU pid of the active>   and watch 'cgv events': the standby takes over
  cgv console demo-0         the VM's serial console (Ctrl-] leaves)
  cgv delete demo            remove the service and its VMs
cgvd logs to /var/log/cgv/cgvd.log.
EOT
