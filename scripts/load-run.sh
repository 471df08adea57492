#!/usr/bin/env bash
# Runs the test suite on every database path (like .ci/run) while the machine is busy, to find tests
# that only pass on an idle machine. For developers, not for CI: it loads the machine heavily.
#
#   scripts/load-run.sh                      # all paths: postgres embedded mariadb mysql sqlite
#   scripts/load-run.sh mariadb sqlite       # some paths
#   LOAD_MINUTES=20 scripts/load-run.sh      # time bound per path (default 15 minutes)
#   JEST_ARGS="test/core" scripts/load-run.sh postgres   # a part of the suite
#   LOAD_CPU_BURNERS=4 LOAD_DISK=0 scripts/load-run.sh    # other load (defaults: 2 burners, disk on)
#
# The load, for the whole run: two CPU burners (as many busy loops as a 2-core CI box has cores), and
# disk-heavy work: `npm ci` of this package into a scratch folder, over and over (thousands of small
# files written and deleted), alternating with a 256 MiB write that is fsynced. Each path's suite is
# bounded by LOAD_MINUTES; the report at the end names every failed test per path (and a path that
# timed out). Exit status 0 only if every path passed. Everything it starts is stopped on exit, and its
# scratch folders are removed. Needs the same services as .ci/run (PostgreSQL on 5432, MariaDB on 3306).
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_PATHS=(postgres embedded mariadb mysql sqlite)
paths=("$@")
[ ${#paths[@]} -eq 0 ] && paths=("${ALL_PATHS[@]}")
for p in "${paths[@]}"; do
  case " ${ALL_PATHS[*]} " in *" $p "*) ;; *) echo "unknown path \"$p\" (known: ${ALL_PATHS[*]})" >&2; exit 2 ;; esac
done
minutes=${LOAD_MINUTES:-15}
case "$minutes" in '' | *[!0-9]*) echo "LOAD_MINUTES must be a whole number of minutes, got \"$minutes\"" >&2; exit 2 ;; esac
burners=${LOAD_CPU_BURNERS:-2}
disk=${LOAD_DISK:-1}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/db-mutex-load-XXXXXX")
results="$scratch/results"
mkdir -p "$results"
load_pids=()

stop_load() {
  # Only what this script started, by pid (each load job runs in its own process group).
  for pid in "${load_pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  for pid in "${load_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  load_pids=()
}
cleanup() {
  stop_load
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n==> %s\n' "$*"; }

start_load() {
  local total_s=$1
  for _ in $(seq 1 "$burners"); do
    setsid timeout "$total_s" sh -c 'while :; do :; done' &
    load_pids+=($!)
  done
  [ "$disk" = 0 ] && return
  # Disk: a scratch install of this package's dependencies, again and again, then a fsynced write.
  mkdir -p "$scratch/npm-ci"
  cp package.json package-lock.json "$scratch/npm-ci/"
  setsid timeout "$total_s" bash -c '
    dir=$1
    while :; do
      npm ci --prefix "$dir" --no-audit --no-fund --ignore-scripts --prefer-offline >/dev/null 2>&1 || true
      rm -rf "$dir/node_modules"
      dd if=/dev/zero of="$dir/blob" bs=1M count=256 conv=fsync status=none || true
      rm -f "$dir/blob"
    done' load-disk "$scratch/npm-ci" &
  load_pids+=($!)
}

log "build"
npm run -s build

per_path_s=$((minutes * 60))
log "load: $burners CPU burners$([ "$disk" = 0 ] || echo " + npm ci / fsync loop"), for up to ${#paths[@]} x $minutes min"
start_load $(( (${#paths[@]} * per_path_s) + 60 ))

declare -A outcome
for label in "${paths[@]}"; do
  sqlite_dir=""
  case "$label" in
    postgres) run_env=(env DATABASE_URL=postgres://postgres@127.0.0.1:5432/test) ;;
    embedded) run_env=(env -u DATABASE_URL) ;;
    mariadb) run_env=(env DATABASE_URL=mariadb://root@127.0.0.1:3306/test) ;;
    mysql) run_env=(env DATABASE_URL=mysql://root@127.0.0.1:3306/test) ;;
    sqlite)
      sqlite_dir=$(mktemp -d "$scratch/sqlite-XXXXXX")
      run_env=(env DATABASE_URL="sqlite:$sqlite_dir/load.db")
      ;;
  esac
  log "npm test ($label) under load, at most $minutes min"
  started=$(date +%s)
  set +e
  # --forceExit: a path cut short must not hang on a handle; jest's JSON report says what failed.
  "${run_env[@]}" timeout --kill-after=30 "$per_path_s" npx jest --json --outputFile="$results/$label.json" --forceExit ${JEST_ARGS:-} \
    >"$results/$label.log" 2>&1
  status=$?
  set -e
  outcome[$label]="exit $status after $(( $(date +%s) - started )) s"
  [ "$status" -eq 124 ] && outcome[$label]="TIMED OUT after $minutes min"
  [ -n "$sqlite_dir" ] && rm -rf "$sqlite_dir"
done
stop_load

log "report"
failed=0
for label in "${paths[@]}"; do
  echo "--- $label: ${outcome[$label]}"
  if [ ! -s "$results/$label.json" ]; then
    echo "    no jest report; the last lines of its output:"
    tail -n 20 "$results/$label.log" | sed 's/^/    /'
    failed=1
    continue
  fi
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const root = process.cwd() + "/";
    console.log(`    ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped; ` +
      `${r.numFailedTestSuites} of ${r.numTotalTestSuites} files failed`);
    for (const file of r.testResults) {
      const name = file.name.replace(root, "");
      const failures = file.assertionResults.filter((a) => a.status === "failed");
      if (file.status === "failed" && failures.length === 0) {
        console.log(`    FAILED FILE ${name}: ${(file.message || "").split("\n").find((l) => l.trim()) || "(no message)"}`);
      }
      for (const a of failures) {
        const first = (a.failureMessages[0] || "").split("\n").find((l) => l.trim()) || "";
        console.log(`    FAILED ${name} > ${a.fullName}\n           ${first.slice(0, 200)}`);
      }
    }
    process.exit(r.success ? 0 : 1);
  ' "$results/$label.json" || failed=1
done
exit $failed
