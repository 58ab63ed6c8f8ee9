#!/usr/bin/env bash
# Runs an N-node elastickv cluster on 127.0.0.1 (a release build).
#
#   scripts/local-cluster.sh start [N]   # N nodes, default 3
#   scripts/local-cluster.sh status
#   scripts/local-cluster.sh add ID      # start node ID empty (--join) and add it
#   scripts/local-cluster.sh remove ID   # remove node ID from every shard, stop it
#   scripts/local-cluster.sh stop
#
# Node i serves Redis on 127.0.0.1:(6378+i) and raft on 127.0.0.1:(7378+i);
# data in cluster-data/node<i>, log in cluster-data/node<i>.log, pid in
# cluster-data/node<i>.pid. Every shard has a replica on every node.
# Extra node flags can be given in ELASTICKV_FLAGS (e.g. "--shards 8");
# ELASTICKV_RAFT_* variables are passed through to every node.
# ELASTICKV_CLUSTER_DIR moves the cluster directory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="${ELASTICKV_CLUSTER_DIR:-$ekv_root/cluster-data}"
redis_base=6378
raft_base=7378

usage() {
  echo "usage: $0 start [N] | status | add ID | remove ID | stop" >&2
  exit 2
}

bin() { echo "${CARGO_TARGET_DIR:-$HOME/.cache/elastickv/target}/release/elastickv"; }

# A running node's raft address, for ctl.
any_raft_addr() {
  local i
  for i in $(nodes); do
    if pid_of "$i" >/dev/null; then
      echo "127.0.0.1:$((raft_base + i))"
      return
    fi
  done
  echo "no running node in $dir" >&2
  exit 1
}

add() {
  local id=$1
  [[ "$id" =~ ^[1-9][0-9]*$ ]] || usage
  if pid_of "$id" >/dev/null; then
    echo "node $id is already running" >&2
    exit 1
  fi
  local via peers="" i
  via=$(any_raft_addr)
  for i in $(nodes) "$id"; do
    peers+="${peers:+,}$i=127.0.0.1:$((raft_base + i))"
  done
  # shellcheck disable=SC2086 # ELASTICKV_FLAGS is a list of flags
  nohup "$(bin)" --node-id "$id" --peers "$peers" --join \
    --redis-addr "127.0.0.1:$((redis_base + id))" \
    --raft-addr "127.0.0.1:$((raft_base + id))" \
    --data-dir "$dir/node$id" ${ELASTICKV_FLAGS:-} \
    >>"$dir/node$id.log" 2>&1 &
  echo $! >"$dir/node$id.pid"
  sleep 1
  "$(bin)" ctl --addr "$via" add-node "$id" "127.0.0.1:$((raft_base + id))"
  status
}

remove() {
  local id=$1 via pid
  [[ "$id" =~ ^[1-9][0-9]*$ ]] || usage
  via=$(any_raft_addr)
  if [ "$via" = "127.0.0.1:$((raft_base + id))" ]; then
    for i in $(nodes); do
      if [ "$i" != "$id" ] && pid_of "$i" >/dev/null; then via="127.0.0.1:$((raft_base + i))"; fi
    done
  fi
  "$(bin)" ctl --addr "$via" remove-node "$id"
  stop_node "$id"
  echo "node $id removed and stopped (its data is in $dir/node$id)"
}

pid_of() {
  local file="$dir/node$1.pid"
  [ -f "$file" ] || return 1
  local pid
  pid=$(cat "$file")
  kill -0 "$pid" 2>/dev/null || return 1
  # A killed process can linger for a moment as a zombie.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

nodes() {
  local f
  for f in "$dir"/node*.pid; do
    [ -e "$f" ] || continue
    f=${f##*/node}
    echo "${f%.pid}"
  done | sort -n
}

# True when the node on this port answers and knows a leader for every shard.
all_led() {
  local info
  info=$(redis-cli -p "$1" INFO raft 2>/dev/null) || return 1
  [[ "$info" == *shard0:* && "$info" != *leader=0,* ]]
}

start() {
  local n=${1:-3}
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage
  ekv_prepare_build
  # redis-cli: readiness checks here, and the client the README uses.
  ekv_need_packages redis-tools
  cargo build --release --locked -p elastickv
  local bin="$CARGO_TARGET_DIR/release/elastickv"
  mkdir -p "$dir"
  local peers="" i
  for ((i = 1; i <= n; i++)); do
    peers+="${peers:+,}$i=127.0.0.1:$((raft_base + i))"
  done
  for ((i = 1; i <= n; i++)); do
    if pid=$(pid_of "$i"); then
      echo "node $i is already running (pid $pid)" >&2
      continue
    fi
    # --bootstrap: the nodes found the cluster together on the first
    # start; later starts (data present) ignore it, and a node whose data
    # directory was lost refuses to found a second cluster.
    # shellcheck disable=SC2086 # ELASTICKV_FLAGS is a list of flags
    nohup "$bin" --node-id "$i" --peers "$peers" --bootstrap \
      --redis-addr "127.0.0.1:$((redis_base + i))" \
      --raft-addr "127.0.0.1:$((raft_base + i))" \
      --data-dir "$dir/node$i" ${ELASTICKV_FLAGS:-} \
      >>"$dir/node$i.log" 2>&1 &
    echo $! >"$dir/node$i.pid"
  done
  # Wait until every node answers and every shard has a leader.
  local deadline=$((SECONDS + 30))
  for ((i = 1; i <= n; i++)); do
    until all_led $((redis_base + i)); do
      if ! pid_of "$i" >/dev/null; then
        echo "node $i exited; see $dir/node$i.log:" >&2
        tail -n 5 "$dir/node$i.log" >&2
        exit 1
      fi
      if ((SECONDS > deadline)); then
        echo "node $i did not become ready in 30 s; see $dir/node$i.log" >&2
        exit 1
      fi
      sleep 0.2
    done
  done
  status
}

status() {
  local i any=0
  for i in $(nodes); do
    any=1
    local port=$((redis_base + i))
    if pid=$(pid_of "$i"); then
      local leaders
      leaders=$(redis-cli -p "$port" INFO raft 2>/dev/null |
        tr -d '\r' | awk -F: '/^shard[0-9]+:role=leader/ {printf "%s%s", sep, substr($1, 6); sep=","}' || true)
      echo "node $i: running, pid $pid, redis 127.0.0.1:$port, raft 127.0.0.1:$((raft_base + i)), leads shards [${leaders}]"
    else
      echo "node $i: stopped (redis 127.0.0.1:$port)"
    fi
  done
  [ "$any" = 1 ] || echo "no cluster in $dir"
}

# SIGTERM (a graceful stop), then SIGKILL if it takes over 10 s.
stop_node() {
  local pid waited=0
  if pid=$(pid_of "$1"); then
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "node $1 stopped"
  fi
  rm -f "$dir/node$1.pid"
}

stop() {
  local i
  for i in $(nodes); do
    stop_node "$i"
  done
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  status) status ;;
  add) add "${2:-}" ;;
  remove) remove "${2:-}" ;;
  stop) stop ;;
  *) usage ;;
esac
