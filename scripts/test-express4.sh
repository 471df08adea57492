#!/usr/bin/env bash
# The dashboard and route-handler tests against Express 4 (peerDependencies claims ^4.18 || ^5; the
# repository itself develops on Express 5). The packed tarball (`npm pack`) is installed into a scratch
# app next to express@4, and jest loads the package, Express and Sequelize from that app (see
# jest.config.js, DB_MUTEX_TEST_PACKAGE_DIR), so what runs is what a user of Express 4 installs.
#
#   bash scripts/test-express4.sh                      # database: DATABASE_URL, or an embedded PostgreSQL
#   EXPRESS_SPEC=express@4.18.0 bash scripts/test-express4.sh   # the oldest version the range admits
#   bash scripts/test-express4.sh test/admin.test.ts    # only these test files
set -euo pipefail
cd "$(dirname "$0")/.."
spec=${EXPRESS_SPEC:-express@4}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/db-mutex-express4-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

npm run -s build
tarball=$(npm pack --silent --pack-destination "$scratch" | tail -n 1)
printf '{ "name": "express4-app", "version": "1.0.0", "private": true }\n' > "$scratch/package.json"
# The driver follows DATABASE_URL's scheme (unset: the embedded PostgreSQL).
case "${DATABASE_URL:-postgres:}" in
  postgres*) driver=(pg@8) ;;
  mariadb*) driver=(mariadb@3) ;;
  mysql*) driver=(mysql2@3) ;;
  sqlite*) driver=("$PWD/node_modules/sqlite3" --ignore-scripts) ;; # as test/package.test.ts: no recompiling
  *) echo "unsupported DATABASE_URL scheme" >&2; exit 2 ;;
esac
(cd "$scratch" && npm install --prefer-offline --no-audit --no-fund --loglevel=error \
  "./$tarball" "$spec" sequelize@6 "${driver[@]}")
installed=$(node -p "require('$scratch/node_modules/express/package.json').version")
echo "Express $installed and the packed $(basename "$tarball") in $scratch"

# Every test of the dashboard and of dbMutexHandler, and the check that this run loads what it says.
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(test/express-peer.test.ts test/admin.test.ts test/admin-browser.test.ts test/express-handler.test.ts)
fi
DB_MUTEX_TEST_PACKAGE_DIR="$scratch" DB_MUTEX_TEST_EXPRESS_MAJOR="${installed%%.*}" npx jest "${tests[@]}"
