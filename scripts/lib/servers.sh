# Shell functions shared by the scripts that run the real test servers (arcadedb.sh,
# neo4j.sh, gremlin.sh, lib/java_server.sh): sourced, never run.

# Prints N free TCP ports on 127.0.0.1, one per line, all distinct.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
EOF
}

# Succeeds once a Bolt server on 127.0.0.1:$1 completes the version handshake.
bolt_handshake_ok() {
  python3 - "$1" <<'EOF' >/dev/null 2>&1
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    # magic, then 4 proposals: 5.x range, 4.4..4.2, 4.1, 4.0
    s.sendall(bytes.fromhex("6060b017" "00080805" "00020404" "00000104" "00000004"))
    data = b""
    while len(data) < 4:
        chunk = s.recv(4 - len(data))
        if not chunk:
            sys.exit(1)
        data += chunk
    sys.exit(0 if data != b"\0\0\0\0" else 1)
EOF
}


# Starts a watcher in the background that stops server $2 (TERM, then KILL after $3
# seconds) once process $1 is gone: a test run that dies without stopping its server
# leaks nothing.
stop_when_gone() {
  local watched="$1" pid="$2" stop_timeout="$3"
  (
    trap '' HUP INT
    while kill -0 "$watched" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq "$stop_timeout"); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  ) </dev/null >/dev/null 2>&1 &
  disown
}

# Succeeds once something accepts TCP connections on 127.0.0.1:$1.
tcp_open() {
  python3 - "$1" <<'EOF2' >/dev/null 2>&1
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
EOF2
}

# Prints the PID a server script recorded as ${2}_PID=... in $1/env.
recorded_pid() {
  [ -f "$1/env" ] || return 1
  sed -n "s/^${2}_PID=\([0-9][0-9]*\)$/\1/p" "$1/env"
}

# Succeeds when process $1 runs and its command line holds $2 (a recorded PID may have
# been reused by another process since).
runs_as() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# Stops process $1: TERM, then KILL if it still runs after $2 seconds; returns once it is
# gone. Fails (status 1) when it had to be killed.
stop_pid() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $(($2 * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -0 "$pid" 2>/dev/null || return 0
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  return 1
}
