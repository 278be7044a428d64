#!/usr/bin/env bash
# Installs inlet the two ways the README gives for a machine without a checkout, each into
# a scratch folder, and runs the quickstart project with each installed binary:
#
#   1. cargo install --locked --path crates/inlet-cli
#   2. the Python wheel: maturin builds it (bindings = "bin", pyproject.toml), then
#      `pip install` into a fresh venv puts `inlet` on that venv's PATH
#
# Each run must land the quickstart's 4,000 rows (read back with DuckDB), a second run
# nothing new. scripts/test runs this; it needs the test venv ($INLET_TEST_PYTHON, with
# duckdb and maturin from scripts/requirements-test.txt).
#
# The README installs with the release profile. Here `cargo install` uses INSTALL_PROFILE
# (default: test, the profile the test suite builds anyway), so CI does not compile
# everything a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${INLET_TEST_PYTHON:?set INLET_TEST_PYTHON to a Python with duckdb and maturin}"
bin_dir=$(dirname "$py")
profile="${INSTALL_PROFILE:-test}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The quickstart project with its lake in the scratch folder; 4,000 rows, then none.
quickstart() {
  local inlet=$1 name=$2
  local project="$tmp/$name"
  cp -r examples/quickstart "$project"
  sed -i 's|^url = .*|url = "file://lake"|' "$project/inlet.toml"
  "$inlet" --version
  "$inlet" --project "$project/inlet.toml" -q sync quickstart
  "$inlet" --project "$project/inlet.toml" -q sync quickstart
  local rows
  rows=$("$py" -c "import duckdb, sys; print(duckdb.sql(\"select count(*) from read_parquet('$project/lake/quickstart/*/*/*.parquet', union_by_name = true)\").fetchone()[0])")
  if [ "$rows" != 4000 ]; then
    echo "check-install: $name: the quickstart landed $rows rows in $project/lake, not 4000 (3,000 clicks and 1,000 orders, once)" >&2
    exit 1
  fi
  echo "check-install: $name: $inlet landed the quickstart's 4000 rows, the second run nothing"
}

echo "check-install: cargo install --locked --path crates/inlet-cli --profile $profile" >&2
cargo install --quiet --locked --path crates/inlet-cli --profile "$profile" --root "$tmp/cargo"
quickstart "$tmp/cargo/bin/inlet" cargo-install

echo "check-install: maturin build (pyproject.toml) and pip install into a fresh venv" >&2
# maturin takes the test profile's binary under its hashed name (deps/inlet-<hash>), so the
# wheel is built with the dev profile, and lean (the quickstart's build: ~2 minutes from
# nothing) to keep CI short; the packaging is the same for every feature set.
"$bin_dir/maturin" build --quiet --locked --profile dev --no-default-features --out "$tmp/wheels" >&2
wheel=$(ls "$tmp"/wheels/inlet-*.whl)
echo "check-install: built $(basename "$wheel") ($(stat -c %s "$wheel") bytes)" >&2
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheel"
# The wheel put `inlet` on the venv's PATH (and nothing else found it there before).
found=$(PATH="$tmp/venv/bin:/usr/bin:/bin" command -v inlet || true)
if [ "$found" != "$tmp/venv/bin/inlet" ]; then
  echo "check-install: the wheel did not put inlet on the venv's PATH (found: ${found:-nothing}); the venv holds: $(ls "$tmp/venv/bin")" >&2
  exit 1
fi
quickstart "$found" wheel
