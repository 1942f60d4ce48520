#!/usr/bin/env bash
# Integration: the Prometheus /metrics of a real kvfs-server and a real kvfs
# mount of it ($KVFS_TEST_PROVIDER: shm or tcp), on loopback ports of
# 7935-7944. Runs traffic (kvfsctl batch and put/get, a miss; cp and cat
# through the mount, a file read twice so the second open keeps the page
# cache, a missing file), then checks the series and their values in both
# outputs, `promtool check metrics` on both, 404 and 405, and finally starts
# Debian's real prometheus with a scrape config for both targets and queries
# its HTTP API until it holds samples of a few series (at most 30 s).
# Skips (77) without root/FUSE (mount_lib.sh) or without prometheus/promtool.
# The EXIT trap of mount_lib.sh unmounts, ends every process it started
# (prometheus too: its command line names the temp dir) and removes the temp
# dir, however the test ends.
#   metrics.sh BUILD_DIR [SOURCE_DIR]
. "$(dirname "$0")/../mount/mount_lib.sh"
ml_init "$@"
command -v promtool >/dev/null || ml_skip "promtool is not installed (apt-get install prometheus)"
command -v prometheus >/dev/null || ml_skip "prometheus is not installed (apt-get install prometheus)"
command -v curl >/dev/null || ml_skip "curl is not installed"

# Ports of this test's range: server, its metrics, the mount's, prometheus.
if [ "$PROV" = shm ]; then base=7935; else base=7940; fi
P_SRV=$base P_SM=$((base + 1)) P_MM=$((base + 2)) P_PROM=$((base + 3))
ml_config 1
cat >"$CONF" <<CONF
cluster = { servers = ( { name = "s0"; address = "127.0.0.1:$P_SRV"; } ); };
fabric = { provider = "$PROV"; };
server = { memory = "256M"; max_value = "64M"; prefault = false; metrics = "127.0.0.1:$P_SM"; };
client = { buffer = "64M"; timeout_ms = 5000; local_map = $ML_LOCAL_MAP; metrics = "127.0.0.1:$P_MM"; };
CONF
ml_servers_start || { record "server starts with server.metrics" 1; ml_finish; }
M=$T/m
ml_mount "$M" || { record "mount with client.metrics" 1; ml_finish; }

# --- traffic -------------------------------------------------------------------
N=25
t_traffic() {
	local i
	# one session (kvfsctl batch): N puts, N gets, one GET of a missing key (exit 1)
	{
		for ((i = 0; i < N; i++)); do echo "put k/$i \"value $i\""; done
		for ((i = 0; i < N; i++)); do echo "get k/$i"; done
		echo "get k/missing"
	} >"$T/batch"
	ctl batch "$T/batch" >"$T/batch.out"
	[ $? -eq 1 ] && [ "$(grep -c '^ERR ENOENT' "$T/batch.out")" -eq 1 ] || return 1
	echo plain | ctl put k/plain - && test "$(ctl get k/plain)" = plain || return 1
	head -c 3000000 /dev/urandom >"$T/big" && cp "$T/big" "$M/big" && cmp "$T/big" "$M/big" &&
		test "$(cat "$M/k/3")" = "value 3" && test "$(cat "$M/k/3")" = "value 3" &&
		# a reader beside a writer of the same file reads around the cache
		{ exec 3>>"$M/big"; cmp "$T/big" "$M/big"; local rc=$?; exec 3>&-; [ $rc -eq 0 ]; } &&
		! cat "$M/no-such-file" 2>/dev/null
}
check "traffic: kvfsctl batch of $N puts, $N gets and a miss, put/get, cp and cat through the mount" t_traffic

# --- the scrapes -----------------------------------------------------------------
S=$T/server.prom F=$T/mount.prom
check "GET /metrics of the server (text format 0.0.4)" sh -c \
	"curl -sf -D '$T/h' http://127.0.0.1:$P_SM/metrics >'$S' && grep -qi '^content-type: text/plain; version=0.0.4' '$T/h'"
check "GET /metrics of the mount" sh -c "curl -sf http://127.0.0.1:$P_MM/metrics >'$F'"
check "promtool check metrics: server" sh -c "promtool check metrics <'$S'"
check "promtool check metrics: mount" sh -c "promtool check metrics <'$F'"

# val FILE 'name{labels}': the sample's value ("" when absent); a SERIES
# ending in "," matches the first sample with those labels first, e.g.
# 'x{provider="tcp",' matches x{provider="tcp",domain="lo"}
val() {
	awk -v s="$2" '(substr(s, length(s)) == "," && index($0, s) == 1) || index($0, s " ") == 1 {
		print $NF; exit }' "$1"
}
# ge FILE SERIES MIN: the series exists with a value >= MIN
ge() {
	local v
	v=$(val "$1" "$2")
	[ -n "$v" ] || { echo "no $2 in $(basename "$1")"; return 1; }
	awk -v v="$v" -v m="$3" 'BEGIN { exit !(v + 0 >= m + 0) }' || { echo "$2 = $v, want >= $3"; return 1; }
}
t_server_series() {
	ge "$S" 'kvfs_server_requests_total{op="get"}' "$N" &&
		ge "$S" 'kvfs_server_request_duration_seconds_count{op="get"}' "$N" &&
		ge "$S" 'kvfs_server_request_duration_seconds_bucket{op="get",le="+Inf"}' "$N" &&
		ge "$S" 'kvfs_server_hits_total' "$N" &&
		ge "$S" 'kvfs_server_misses_total' 1 &&
		ge "$S" 'kvfs_server_puts_total' $((N + 2)) &&
		ge "$S" "kvfs_server_received_bytes_total{provider=\"$PROV\"," 3000000 &&
		ge "$S" "kvfs_server_sent_bytes_total{provider=\"$PROV\"," 1 &&
		grep -qE "^kvfs_server_errors_total\{provider=\"$PROV\",domain=\"[^\"]+\",kind=\"fabric\"\} 0\$" "$S" &&
		grep -qE "^kvfs_server_stalled_sessions_total\{provider=\"$PROV\",domain=\"[^\"]+\"\} 0\$" "$S" &&
		grep -qE "^kvfs_server_dropped_requests_total\{provider=\"$PROV\",domain=\"[^\"]+\"\} 0\$" "$S" &&
		ge "$S" 'kvfs_server_keys' $((N + 2)) &&
		ge "$S" 'kvfs_server_pool_size_bytes' $((256 << 20)) &&
		ge "$S" 'kvfs_server_pool_used_bytes{class="large"}' $((2 << 20)) &&
		grep -qE '^kvfs_server_slab_chunks_used\{class="[0-9]+"\} [1-9]' "$S" &&
		ge "$S" 'kvfs_server_sessions' 1 &&
		ge "$S" 'kvfs_server_uploads_open' 0 &&
		ge "$S" 'kvfs_server_pins_open' 0 &&
		ge "$S" 'kvfs_server_evictions_total' 0 &&
		ge "$S" 'kvfs_server_expirations_total' 0
}
check "server series with plausible values" t_server_series
t_mount_series() {
	ge "$F" 'kvfs_mount_request_duration_seconds_count{op="write"}' 1 &&
		ge "$F" 'kvfs_mount_request_duration_seconds_count{op="read"}' 1 &&
		ge "$F" 'kvfs_mount_request_duration_seconds_count{op="lookup"}' 1 &&
		ge "$F" 'kvfs_mount_written_bytes_total' 3000000 &&
		ge "$F" 'kvfs_mount_read_bytes_total' 3000000 &&
		ge "$F" 'kvfs_mount_errors_total{errno="ENOENT"}' 1 &&
		ge "$F" 'kvfs_mount_opens_total{cache="direct"}' 1 &&
		ge "$F" 'kvfs_mount_opens_total{cache="page_cache"}' 1 &&
		ge "$F" 'kvfs_mount_opens_total{cache="keep_cache"}' 1 &&
		ge "$F" 'kvfs_mount_server_up{server="s0"}' 1 &&
		ge "$F" 'kvfs_mount_server_state{server="s0",state="up"}' 1
}
check "mount series with plausible values" t_mount_series
t_stats_agree() { # kvfsctl stats and /metrics read the same counters (bytes: all endpoints, the direct one included)
	local st h b
	st=$(ctl stats --json) || return 1
	h=$(printf '%s' "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["hits"])') &&
		b=$(printf '%s' "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["bytes_in"])') || return 1
	curl -sf "http://127.0.0.1:$P_SM/metrics" >"$T/s2" && ge "$T/s2" kvfs_server_hits_total "$h" &&
		test "$(awk '/^kvfs_server_received_bytes_total\{/ { s += $NF } END { printf "%d", s }' "$T/s2")" = "$b"
}
check "kvfsctl stats and /metrics agree (hits, bytes in)" t_stats_agree
check "404 for another path" sh -c "test \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P_SM/)\" = 404"
check "405 for POST" sh -c "test \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:$P_MM/metrics)\" = 405"
check_fail "a second server on the same metrics address fails to start" "Address already in use" \
	sh -c "sed 's/:$P_SRV\"/:$((base + 4))\"/' '$CONF' >'$T/busy.conf' && timeout 20 '$BUILD/kvfs-server' -c '$T/busy.conf'"

# --- the real Prometheus -----------------------------------------------------------
cat >"$T/prometheus.yml" <<YML
global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: kvfs-server
    static_configs: [ { targets: [ "127.0.0.1:$P_SM" ] } ]
  - job_name: kvfs-mount
    static_configs: [ { targets: [ "127.0.0.1:$P_MM" ] } ]
YML
check "promtool check config" promtool check config "$T/prometheus.yml"
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
	--web.listen-address="127.0.0.1:$P_PROM" --log.level=warn >"$T/prometheus.log" 2>&1 &
PROM=$!
# query EXPR: the number of series the instant query returns (prints 0 on errors)
query() {
	curl -sf -G "http://127.0.0.1:$P_PROM/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
		python3 -c 'import json,sys
try:
    d = json.load(sys.stdin); print(len(d["data"]["result"]) if d["status"] == "success" else 0)
except Exception:
    print(0)'
}
Q=(
	'kvfs_server_requests_total{job="kvfs-server",op="get"} >= '"$N"
	'rate(kvfs_server_request_duration_seconds_count{op="get"}[1m]) >= 0'
	'kvfs_server_pool_used_bytes{class="large"} > 0'
	'kvfs_mount_read_bytes_total{job="kvfs-mount"} >= 3000000'
	'kvfs_mount_request_duration_seconds_bucket{op="read",le="+Inf"} > 0'
	'up{job="kvfs-server"} == 1'
	'up{job="kvfs-mount"} == 1'
)
t_prometheus() {
	local end=$((SECONDS + 30)) q missing
	while ((SECONDS < end)); do
		missing=
		for q in "${Q[@]}"; do
			[ "$(query "$q")" -ge 1 ] || { missing=$q; break; }
		done
		[ -z "$missing" ] && return 0
		kill -0 "$PROM" 2>/dev/null || { echo "prometheus exited:"; tail -5 "$T/prometheus.log"; return 1; }
		sleep 0.5
	done
	echo "after 30 s prometheus has no sample for: $missing"
	tail -5 "$T/prometheus.log"
	return 1
}
check "prometheus scrapes both and answers queries for their series" t_prometheus
kill -TERM "$PROM" 2>/dev/null
ml_wait_gone "$PROM" 10 || kill -KILL "$PROM" 2>/dev/null
wait "$PROM" 2>/dev/null
ml_finish
