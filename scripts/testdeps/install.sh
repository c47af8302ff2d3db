#!/usr/bin/env bash
# install.sh DIR: installs the Node packages of scripts/testdeps (package.json
# and package-lock.json, with integrity hashes) into DIR/node_modules, unless
# that lock file is already installed there. make test runs it; the folder is
# a cache outside the repository, shared by checkouts (a lock serialises them).
set -euo pipefail
dir=$1
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
exec 9>"$dir/.install.lock"
flock 9
if cmp -s "$src/package-lock.json" "$dir/.installed-lock.json" && [ -d "$dir/node_modules" ]; then
	exit 0
fi
rm -f "$dir/.installed-lock.json"
cp "$src/package.json" "$src/package-lock.json" "$dir/"
echo "installing the tests' Node packages into $dir"
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
cp "$src/package-lock.json" "$dir/.installed-lock.json"
