#!/usr/bin/env bash
# End-to-end benchmark: jcp -> jsrv (TLS/TCP and QUIC) beside rsync over ssh and
# the local `tar | tar` floor, on the Linux kernel workload (see bench/README.md).
#
# Usage: bench/e2e.sh            (from anywhere; RUNS=3 by default)
#
# Environment:
#   RUNS=N               timed runs per case; medians are reported (default 3)
#   JSYNC_BENCH_DIR      dataset and targets, on tmpfs (default /dev/shm/jsync-bench)
#   JSYNC_BENCH_SHARED   dir with kernel-dataset.sh and rsync-baseline.sh
#                        (default: ../shared/bench beside the repo root)
#   TRANSPORTS           "tls quic" (default) or a subset
#   SKIP_RSYNC=1         skip rsync-baseline.sh and the rsync stats pass
#   JSYNC_BENCH_OUT      where logs and per-run files go (default: a temp dir, kept)
#
# Workloads, each into a target on tmpfs served by a fresh jsrv on 127.0.0.1:0:
#   initial  jcp a/ 127.0.0.1:dst   into an empty target
#   delta    jcp b/ 127.0.0.1:dst   into the target holding a/
#   noop     jcp b/ 127.0.0.1:dst   again
# After every run the target is compared with the source: content
# (diff -rq --no-dereference) and type, mode, mtime (ns) and symlink target
# (find -printf), and nothing extra: jcp runs with --delete, as rsync does in
# rsync-baseline.sh.
set -euo pipefail

runs=${RUNS:-3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${JSYNC_BENCH_SHARED:-$repo/../shared/bench}
dir=${JSYNC_BENCH_DIR:-/dev/shm/jsync-bench}
transports=${TRANSPORTS:-tls quic}
export JSYNC_BENCH_DIR=$dir
A=$dir/a; B=$dir/b
out=${JSYNC_BENCH_OUT:-$(mktemp -d /tmp/jsync-e2e.XXXXXX)}
mkdir -p "$out"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'e2e.sh: %s\n' "$*" >&2; exit 1; }

for s in kernel-dataset.sh rsync-baseline.sh; do
  [ -f "$shared/$s" ] || die "$shared/$s not found (set JSYNC_BENCH_SHARED)"
done
[ -x /usr/bin/time ] || { log "installing GNU time"; apt-get update -qq >/dev/null 2>&1 || true; apt-get install -y -qq time >/dev/null; }

# ---------------------------------------------------------------- dataset, build, keys
log "dataset in $dir"
bash "$shared/kernel-dataset.sh" "$dir" >&2

log "cargo build --release -p jcp -p jsrv"
(cd "$repo" && cargo build --release -q -p jcp -p jsrv)
tdir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
tdir=${tdir:-$repo/target}
JCP=$tdir/release/jcp; JSRV=$tdir/release/jsrv
[ -x "$JCP" ] && [ -x "$JSRV" ] || die "release binaries not found in $tdir/release"

cfg=$out/config
"$JSRV" init --config-dir "$cfg" >"$out/init.log" 2>&1 || { cat "$out/init.log" >&2; die "jsrv init failed"; }

root=$dir/jsync-root          # jsrv's root, on the same tmpfs as the dataset
dst=$root/dst

# ---------------------------------------------------------------- helpers
now_ns() { date +%s%N; }
secs_since() { awk -v n=$(( $(now_ns) - $1 )) 'BEGIN{printf "%.3f", n/1e9}'; }
med() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
maxof() { tr ' ' '\n' | grep . | sort -g | tail -1; }
maxrss_kb() { awk -F': ' '/Maximum resident set size/{print $2}' "$1"; }

srv_pid=
start_jsrv() { # $1 tag -> sets srv_pid, port
  : >"$out/$1.jsrv.out"
  RUST_LOG=${RUST_LOG:-warn} "$JSRV" --config-dir "$cfg" --root "$root" --listen 127.0.0.1:0 \
    >"$out/$1.jsrv.out" 2>"$out/$1.jsrv.err" &
  srv_pid=$!
  local i
  for i in $(seq 100); do
    port=$(sed -n 's/^jsrv listening on .*:\([0-9]*\)$/\1/p' "$out/$1.jsrv.out")
    [ -n "$port" ] && return 0
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$out/$1.jsrv.err" >&2; die "jsrv did not start"
}
stop_jsrv() { # sets hwm: jsrv's peak RSS (VmHWM) in kB; srv_rc: its exit code
  hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$srv_pid/status" 2>/dev/null || true)
  hwm=${hwm:-0}
  # jsrv's CPU time (utime+stime, clock ticks) for the run
  srv_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12+$13)/hz}' "/proc/$srv_pid/stat" 2>/dev/null || echo 0)
  kill -TERM "$srv_pid" 2>/dev/null || true
  srv_rc=0; wait "$srv_pid" 2>/dev/null || srv_rc=$?
  srv_pid=
}
trap '[ -n "$srv_pid" ] && kill -TERM "$srv_pid" 2>/dev/null; true' EXIT

# check SRC TAG: target equals SRC for every path of SRC; prints "ok", "ok (+N extra)"
# or "FAIL (...)"; details in $out/TAG.check
check() {
  local src=$1 tag=$2 f=$out/$2.check
  local listing='%P\t%y\t%m\t%T@\t%l\n'
  (cd "$src" && find . -printf "$listing" | LC_ALL=C sort) >"$f.src"
  (cd "$dst" && find . -printf "$listing" | LC_ALL=C sort) >"$f.dst"
  local extra
  extra=$(awk -F'\t' 'NR==FNR{s[$1]=1; next} !($1 in s)' "$f.src" "$f.dst" | tee "$f.extra" | wc -l)
  awk -F'\t' 'NR==FNR{s[$1]=1; next} ($1 in s)' "$f.src" "$f.dst" >"$f.dst.common"
  local meta content
  diff "$f.src" "$f.dst.common" >"$f.meta" && meta=0 || meta=$(grep -c '^[<>]' "$f.meta" || true)
  # content: ignore only "Only in <target>..." lines (paths b/ lacks)
  diff -rq --no-dereference "$src" "$dst" >"$f.content" 2>&1 || true
  content=$(wc -l <"$f.content")
  local x=""; [ "$extra" -gt 0 ] && x=" +$extra extra"
  if [ "$meta" -eq 0 ] && [ "$content" -eq 0 ] && [ "$extra" -eq 0 ]; then echo "ok"; return; fi
  # paths whose listing differs, by type (f file, d dir, l symlink)
  local bytype
  bytype=$(grep '^<' "$f.meta" | cut -c3- | awk -F'\t' '{n[$2]++} END{for (t in n) printf "%s%s:%d", (c++ ? "," : ""), t, n[t]}')
  echo "FAIL(content:$content meta:${bytype:-0}$x)"
}

declare -A T W CM SM ST CC SC  # times, wire, client/server peak kB, check status
declare -A TP TR                # paired tar | tar times, and jcp/tar per pair
failures=()

run_jcp() { # $1 transport $2 workload $3 src $4 run#
  local tr=$1 w=$2 src=$3 i=$4 tag="$1-$2-$4" flag=""
  [ "$tr" = quic ] && flag=--quic
  start_jsrv "$tag"
  local s rc=0
  s=$(now_ns)
  /usr/bin/time -v -o "$out/$tag.time" "$JCP" --config-dir "$cfg" --port "$port" $flag --delete --stats \
    "$src/" "127.0.0.1:dst" >"$out/$tag.stats" 2>"$out/$tag.err" || rc=$?
  local t; t=$(secs_since "$s")
  stop_jsrv
  [ "$srv_rc" -eq 0 ] || failures+=("$tag: jsrv exited $srv_rc: $(tail -3 "$out/$tag.jsrv.err" | tr '\n' ' ')")
  local wire; wire=$(awk '/^Bytes on the wire:/{print $5}' "$out/$tag.stats")
  local st; st=$(check "$src" "$tag")
  if [ "$rc" -ne 0 ]; then
    st="EXIT$rc,$st"
    failures+=("$tag: jcp exited $rc: $(grep -v '^\s*Command' "$out/$tag.err" | head -5 | tr '\n' ' ')")
  fi
  case $st in *FAIL*)
    failures+=("$tag: check $st: $( { head -2 "$out/$tag.check.content"; grep -m1 '^<' "$out/$tag.check.meta"; grep -m1 '^>' "$out/$tag.check.meta"; } | tr '\t\n' '  ' | cut -c1-600)");;
  esac
  local ccpu; ccpu=$(awk -F': ' '/User time|System time/{c+=$2} END{printf "%.2f", c}' "$out/$tag.time")
  T[$tr.$w]+=" $t"; W[$tr.$w]+=" ${wire:-0}"; CC[$tr.$w]+=" $ccpu"; SC[$tr.$w]+=" $srv_cpu"
  CM[$tr.$w]+=" $(maxrss_kb "$out/$tag.time")"; SM[$tr.$w]+=" $hwm"
  ST[$tr.$w]+="$st"$'\n'
  printf '%-5s %-8s run %s: %7ss  wire %12s  client %6s kB %6ss CPU  jsrv %6s kB %6ss CPU  exit %s  check %s  (load %s)\n' \
    "$tr" "$w" "$i" "$t" "${wire:-?}" "$(maxrss_kb "$out/$tag.time")" "$ccpu" "$hwm" "$srv_cpu" "$rc" "$st" \
    "$(cut -d' ' -f1 /proc/loadavg)" >&2
}

# tar_pair TRANSPORT: `tar | tar` of a/ (rsync-baseline.sh's command) right
# before that transport's initial copy, so the two share the machine's load of
# the moment; jcp/tar is then the median of the per-pair ratios.
tar_pair() {
  local tt=$dir/tar-pair
  rm -rf "$tt"; mkdir -p "$tt"
  local s; s=$(now_ns)
  sh -c "tar -C '$A' -cf - . | tar -C '$tt' -xf -"
  local t; t=$(secs_since "$s")
  TP[$1]+=" $t"
  printf '%-5s tar | tar (paired) %ss\n' "$1" "$t" >&2
  rm -rf "$tt"
}

# ---------------------------------------------------------------- jcp runs
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for tr in $transports; do
  for i in $(seq "$runs"); do
    rm -rf "$root"; mkdir -p "$root"
    tar_pair "$tr"
    run_jcp "$tr" initial "$A" "$i"
    TR[$tr]+=" $(awk -v a="${T[$tr.initial]##* }" -v b="${TP[$tr]##* }" 'BEGIN{printf "%.3f", a/b}')"
    run_jcp "$tr" delta "$B" "$i"
    run_jcp "$tr" noop "$B" "$i"
  done
done
rm -rf "$root"

# ---------------------------------------------------------------- rsync and tar
declare -A R RW RCM RSM
if [ "${SKIP_RSYNC:-0}" != 1 ]; then
  log "rsync-baseline.sh $runs"
  bash "$shared/rsync-baseline.sh" "$runs" | tee "$out/rsync-baseline.out" >&2
  for w in tar_pipe initial delta noop; do
    R[$w]=$(awk -v w="$w" '$1==w && $2 ~ /^runs:/{print ($NF=="s") ? $(NF-1) : $NF}' "$out/rsync-baseline.out")
  done
  RW[delta]=$(awk -F': ' '/^delta wire bytes/{print $2}' "$out/rsync-baseline.out")
  # One more pass, as rsync-baseline.sh does it, for wire bytes of every workload
  # (--stats: total bytes sent + received by the client) and peak memory of the
  # client and of the remote rsync (run under /usr/bin/time via --rsync-path).
  log "rsync stats pass (wire bytes, memory)"
  k=$dir/.ssh; D=$dir/rsync-dst2
  export RSYNC_RSH="ssh -p 2222 -i $k/user -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
  rm -rf "$D"
  rs() { # $1 workload $2 src, rest: extra rsync flags
    local w=$1 src=$2; shift 2
    /usr/bin/time -v -o "$out/rsync-$w.time" rsync -a "$@" --stats \
      --rsync-path="/usr/bin/time -v -o $out/rsync-$w.srvtime rsync" \
      "$src/" "root@127.0.0.1:$D/" >"$out/rsync-$w.stats"
    local wb; wb=$(awk '/^Total bytes sent/{gsub(",","",$4);s=$4} /^Total bytes received/{gsub(",","",$4);r=$4} END{print s+r}' "$out/rsync-$w.stats")
    [ -n "${RW[$w]:-}" ] || RW[$w]=$wb
    RCM[$w]=$(maxrss_kb "$out/rsync-$w.time"); RSM[$w]=$(maxrss_kb "$out/rsync-$w.srvtime")
  }
  rs initial "$A"; rs delta "$B" --delete; rs noop "$B" --delete
  rm -rf "$D"
fi

# ---------------------------------------------------------------- table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.2f", a/b; else printf "-" }'; }
mb() { awk -v k="$1" 'BEGIN{ if (k+0>0) printf "%.0f", k/1024; else printf "-" }'; }
echo
echo "jsync e2e benchmark: Linux 6.1 source, $(nproc) cores, RUNS=$runs (times: median; memory: max over runs; wire: median)"
echo "load average at start: $load0, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews times)"
echo "dataset: $dir  jcp $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet 2>/dev/null || echo '+dirty')"
echo
printf '| workload | jcp transport | jcp s | rsync s | jcp/rsync | tar s | jcp/tar | jcp wire B | rsync wire B | wire jcp/rsync | jcp MB | jsrv MB | rsync client MB | rsync server MB | jcp/jsrv CPU s | target check |\n'
printf '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n'
for w in initial delta noop; do
  for tr in $transports; do
    jt=$(echo "${T[$tr.$w]}" | med); jw=$(echo "${W[$tr.$w]}" | med)
    tarc="-"; tarr="-"
    [ "$w" = initial ] && { tarc=$(echo "${TP[$tr]}" | med); tarr=$(echo "${TR[$tr]}" | med); }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$w" "$tr" "$jt" "${R[$w]:--}" "$(ratio "$jt" "${R[$w]:-}")" "$tarc" "$tarr" \
      "$jw" "${RW[$w]:--}" "$(ratio "$jw" "${RW[$w]:-}")" \
      "$(mb "$(echo "${CM[$tr.$w]}" | maxof)")" "$(mb "$(echo "${SM[$tr.$w]}" | maxof)")" \
      "$(mb "${RCM[$w]:-}")" "$(mb "${RSM[$w]:-}")" \
      "$(echo "${CC[$tr.$w]}" | med)/$(echo "${SC[$tr.$w]}" | med)" \
      "$(printf '%s' "${ST[$tr.$w]}" | sort | uniq -c | awk '{c=$1; $1=""; printf "%s%dx%s", (n++ ? ", " : ""), c, $0}')"
  done
done
cat <<EOF

Notes:
- jcp runs with --delete, as rsync does in rsync-baseline.sh; a target with paths
  the source lacks fails the check.
- check = target equals source: content (diff -rq --no-dereference) and type, mode,
  mtime (ns), symlink target (find -printf); "3x ok" = 3 runs ok; on failure, the
  count of differing paths by type (f file, d dir, l symlink) and of content diffs.
- jcp wire = jcp --stats "Bytes on the wire" (socket bytes incl. TLS/QUIC framing);
  rsync wire = "Total bytes sent" + "Total bytes received" of the rsync client
  (rsync protocol bytes inside ssh, i.e. without ssh's overhead). rsync delta wire
  is rsync-baseline.sh's number; initial/noop come from one extra --stats pass.
- tar = \`tar -C a -cf - . | tar -C DIR -xf -\` (rsync-baseline.sh's command) run just
  before each initial copy, on the same tmpfs; tar s is its median, and jcp/tar the
  median of the per-pair ratios, so that a change of load between the jcp runs and
  the baseline minutes later does not skew it. rsync-baseline.sh's own tar median,
  measured with the rsync runs: ${R[tar_pipe]:--} s.
- CPU = user+sys seconds (median): jcp from /usr/bin/time -v, jsrv from /proc/PID/stat.
- memory = peak RSS: jcp and rsync client from /usr/bin/time -v, jsrv from VmHWM
  (one jsrv per run), remote rsync from /usr/bin/time -v via --rsync-path.
- targets (issue 5): initial <= 0.5x rsync and <= 1.5x tar; delta <= 0.3x rsync time
  and <= 0.5x rsync wire; no-op <= 0.5x rsync; <= 150 MB per process.
- per-run files (stats, stderr, time -v, check diffs): $out
EOF
if [ ${#failures[@]} -gt 0 ]; then
  echo; echo "Failures:"; printf -- '- %s\n' "${failures[@]}"
fi
