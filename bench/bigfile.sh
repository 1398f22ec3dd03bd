#!/usr/bin/env bash
# One large file, jcp/jsrv (TLS on loopback) beside rsync, on tmpfs: the
# initial copy, then a copy that only has a new mtime, one edited in place
# (three 16-byte writes, same size) and one grown by 16 MiB. Medians of RUNS.
#
#   bench/bigfile.sh                  # SIZE_MB=1024 RUNS=3, needs ~6x SIZE of free tmpfs
#   SIZE_MB=2048 bench/bigfile.sh
#   JSYNC_BIN=/some/release/dir bench/bigfile.sh   # other jcp/jsrv builds (no cargo build)
#
# rsync runs locally (`rsync -a --no-W`, its two processes joined by a pipe):
# over ssh it would also encrypt its signature and literals (about 0.6 MB for
# 2 GB) and pay ssh's start, so this is the kinder baseline for rsync. Every
# target is compared with its source (cmp, and the mtime) after every run.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
D=${JSYNC_BIGFILE_DIR:-/dev/shm/jsync-bigfile}
if [ -z "${JSYNC_BIN:-}" ]; then
  cargo build --release -q -p jcp -p jsrv
  BIN=$PWD/target/release
else
  BIN=$JSYNC_BIN
fi
command -v rsync >/dev/null || { echo "bigfile.sh: rsync is not installed" >&2; exit 2; }

CFG=$(mktemp -d)
SP=""
cleanup() { [ -n "$SP" ] && kill "$SP" 2>/dev/null; rm -rf "$CFG" "$D"; }
trap cleanup EXIT
"$BIN/jsrv" init --config-dir "$CFG" >/dev/null
rm -rf "$D"
mkdir -p "$D/src" "$D/root" "$D/rsync"
head -c "${SIZE_MB}M" /dev/urandom > "$D/base.bin"
T0=1700000000
T1=1700000100

"$BIN/jsrv" --config-dir "$CFG" --root "$D/root" --listen 127.0.0.1:0 > "$D/jsrv.out" 2>&1 &
SP=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/^jsrv listening on .*:\([0-9]*\)$/\1/p' "$D/jsrv.out")
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "bigfile.sh: jsrv did not start" >&2; cat "$D/jsrv.out" >&2; exit 1; }

ms() { date +%s%N; }
# Puts the source (and with $1 = keep, both targets) at the base version.
reset() {
  cp "$D/base.bin" "$D/src/big.bin"
  touch -d "@$T0" "$D/src/big.bin"
  rm -rf "$D/root/dst" "$D/rsync"
  mkdir -p "$D/root/dst" "$D/rsync"
  if [ "$1" = keep ]; then
    cp -p "$D/src/big.bin" "$D/root/dst/big.bin"
    cp -p "$D/src/big.bin" "$D/rsync/big.bin"
  fi
}
change() {
  local f=$D/src/big.bin size
  size=$(stat -c %s "$f")
  case $1 in
    touched) ;;
    edited)
      for at in $((size / 7)) $((size / 2)) $((size - 4096)); do
        head -c 16 /dev/urandom | dd of="$f" bs=1 seek="$at" conv=notrunc status=none
      done ;;
    grown) head -c 16M /dev/urandom >> "$f" ;;
  esac
  touch -d "@$T1" "$f"
}
check() {
  cmp -s "$D/src/big.bin" "$1/big.bin" &&
    [ "$(stat -c %Y "$D/src/big.bin")" = "$(stat -c %Y "$1/big.bin")" ] ||
    { echo "bigfile.sh: $1/big.bin differs from the source after $2" >&2; exit 1; }
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A J R JW RW JM
for w in initial touched edited grown; do
  for run in $(seq "$RUNS"); do
    if [ "$w" = initial ]; then reset empty; else reset keep; change "$w"; fi
    s=$(ms)
    /usr/bin/time -f %M -o "$D/jcp.mem" "$BIN/jcp" --config-dir "$CFG" --port "$port" --stats \
      "$D/src/" 127.0.0.1:dst > "$D/jcp.stats"
    e=$(ms)
    check "$D/root/dst" "jcp $w"
    J[$w]+="$(( (e - s) / 1000000 )) "
    JW[$w]+="$(sed -n 's/^Bytes on the wire: *\([0-9]*\).*/\1/p' "$D/jcp.stats") "
    JM[$w]+="$(( $(cat "$D/jcp.mem") / 1024 )) "
    s=$(ms)
    rsync -a --no-W --stats "$D/src/" "$D/rsync/" > "$D/rsync.stats"
    e=$(ms)
    check "$D/rsync" "rsync $w"
    R[$w]+="$(( (e - s) / 1000000 )) "
    sent=$(sed -n 's/^Total bytes sent: *\([0-9,]*\).*/\1/p' "$D/rsync.stats" | tr -d ,)
    recv=$(sed -n 's/^Total bytes received: *\([0-9,]*\).*/\1/p' "$D/rsync.stats" | tr -d ,)
    RW[$w]+="$((sent + recv)) "
  done
done

echo "One ${SIZE_MB} MiB file of random bytes, tmpfs, medians of $RUNS (jcp over TLS to jsrv on loopback; rsync local, -a --no-W)"
echo
echo "| workload | jcp s | rsync s | jcp/rsync | jcp wire KB | rsync wire KB | jcp peak MB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for w in initial touched edited grown; do
  j=$(echo "${J[$w]}" | tr ' ' '\n' | grep . | median)
  r=$(echo "${R[$w]}" | tr ' ' '\n' | grep . | median)
  jw=$(echo "${JW[$w]}" | tr ' ' '\n' | grep . | median)
  rw=$(echo "${RW[$w]}" | tr ' ' '\n' | grep . | median)
  jm=$(echo "${JM[$w]}" | tr ' ' '\n' | grep . | median)
  printf "| %s | %.2f | %.2f | %.2f | %d | %d | %d |\n" "$w" \
    "$(echo "$j / 1000" | bc -l)" "$(echo "$r / 1000" | bc -l)" "$(echo "$j / $r" | bc -l)" \
    $((jw / 1000)) $((rw / 1000)) "$jm"
done
echo
echo "jsrv peak: $(awk '/VmHWM/ {print int($2 / 1024) " MB"}' "/proc/$SP/status")"
