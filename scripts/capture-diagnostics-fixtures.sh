#!/usr/bin/env bash
# Recaptures tests/diagnostics/fixtures/*.txt: real output of real tools run on small broken
# projects, byte for byte (stdout and stderr together, as a task's output would show them).
# Needs: node + this repo's node_modules (tsc, vitest), gcc/g++, clang, make, cmake, rustc/cargo,
# python3 with pytest, and the npm registry (eslint and jest are installed into the scratch dir).
# Usage: bash scripts/capture-diagnostics-fixtures.sh   (scratch dir: /tmp/cogo-diag-capture)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/tests/diagnostics/fixtures"
W=/tmp/cogo-diag-capture
rm -rf "$W" && mkdir -p "$W" "$OUT"
export NO_COLOR=1 TERM=dumb CARGO_TERM_COLOR=never
# capture <fixture> <dir> <command…>: runs in <dir>, keeps what it printed (its exit code is not kept)
capture() { local name=$1 dir=$2; shift 2; (cd "$dir" && "$@") >"$OUT/$name.txt" 2>&1; echo "captured $name ($(wc -l <"$OUT/$name.txt") lines)"; }

# ── TypeScript ──────────────────────────────────────────────────────────────────────────────────
mkdir -p $W/ts/src
cat >$W/ts/tsconfig.json <<'EOF'
{ "compilerOptions": { "strict": true, "noEmit": true, "target": "ES2022", "module": "ES2022", "moduleResolution": "bundler" }, "include": ["src"] }
EOF
cat >$W/ts/src/app.ts <<'EOF'
import { helper } from "./missing";

const count: number = "five";

function greet(name) {
  return `hi ${name}`;
}

export const out = greet(count) + helper;
EOF
capture tsc $W/ts "$ROOT/node_modules/.bin/tsc" -p .
capture tsc-pretty $W/ts "$ROOT/node_modules/.bin/tsc" -p . --pretty
[ -x /usr/bin/tsc ] && capture tsc-debian $W/ts /usr/bin/tsc -p .
mkdir -p $W/tsb/a $W/tsb/b
echo '{ "compilerOptions": { "composite": true, "strict": true }, "files": ["a.ts"] }' >$W/tsb/a/tsconfig.json
echo 'export const a: number = 1;' >$W/tsb/a/a.ts
echo '{ "compilerOptions": { "composite": true, "strict": true }, "files": ["b.ts"], "references": [{ "path": "../a" }] }' >$W/tsb/b/tsconfig.json
echo 'export const b: string = 2;' >$W/tsb/b/b.ts
capture tsc-build $W/tsb "$ROOT/node_modules/.bin/tsc" -b b --verbose

# ── C / C++ / make / cmake ─────────────────────────────────────────────────────────────────────
mkdir -p $W/c
cat >$W/c/bad.c <<'EOF'
#include <stdio.h>

static int add(int a, int b) { return a + b; }

int main(void) {
    int unused;
    char *s = 42;
    int n = add(1, 2, 3);
    printf("%d %s\n", n, s)
    return 0;
}
EOF
capture gcc $W/c gcc -Wall -c bad.c -o bad.o
cat >$W/c/tmpl.cpp <<'EOF'
#include <string>
#include <vector>

template <typename T> T twice(T x) { return x * 2; }

int main() {
    std::vector<int> v;
    std::string s = twice(std::string("a"));
    v.push_back("x");
    return 0;
}
EOF
capture gxx $W/c g++ -c tmpl.cpp -o tmpl.o
cat >$W/c/link.c <<'EOF'
int missing_function(void);
int main(void) { return missing_function(); }
EOF
capture gcc-link $W/c gcc link.c -o link
CLANG=$(command -v clang || command -v clang-14 || true)
if [ -n "$CLANG" ]; then capture clang $W/c "$CLANG" -Wall -c bad.c -o bad.o; else echo "skipped clang (apt-get install clang-14)"; fi
printf 'all: bad.o\n\nbad.o: bad.c\n\tgcc -Wall -c bad.c -o bad.o\n' >$W/c/Makefile
capture make $W/c make
mkdir -p $W/cmake/src
printf 'cmake_minimum_required(VERSION 3.13)\nproject(demo C)\nadd_library(util src/util.c)\nadd_executable(app src/main.c)\ntarget_link_libraries(app util)\n' >$W/cmake/CMakeLists.txt
echo 'int util(void) { return 1; }' >$W/cmake/src/util.c
printf 'int util(void);\nint main(void) { return util() + "x"; }\n' >$W/cmake/src/main.c
(cd $W/cmake && cmake -S . -B build >/dev/null 2>&1)
capture cmake-make $W/cmake make -C build

# ── Rust ────────────────────────────────────────────────────────────────────────────────────────
mkdir -p $W/rs/src
printf '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n' >$W/rs/Cargo.toml
cat >$W/rs/src/main.rs <<'EOF'
fn main() {
    let unused = 1;
    let n: i32 = "seven";
    println!("{}", n + missing);
}
EOF
capture cargo-json $W/rs cargo build --message-format=json
rm -rf $W/rs/target
capture cargo-human $W/rs cargo build
capture rustc-json $W/rs rustc --error-format=json --emit=metadata -o /dev/null src/main.rs
mkdir -p $W/rt/src
printf '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n' >$W/rt/Cargo.toml
cat >$W/rt/src/lib.rs <<'EOF'
pub fn add(a: i32, b: i32) -> i32 { a + b }

#[cfg(test)]
mod tests {
    use super::*;
    #[test] fn adds() { assert_eq!(add(1, 2), 3); }
    #[test] fn adds_wrong() { assert_eq!(add(2, 2), 5); }
    #[test] #[ignore] fn slow() {}
}
EOF
capture cargo-test $W/rt cargo test

# ── Python ──────────────────────────────────────────────────────────────────────────────────────
mkdir -p $W/py
cat >$W/py/app.py <<'EOF'
def parse(value):
    return int(value)


def main():
    return parse("seven")


main()
EOF
capture python-traceback $W/py python3 app.py
printf 'def f(:\n    pass\n' >$W/py/syntax.py
capture python-syntax $W/py python3 syntax.py
cat >$W/py/test_calc.py <<'EOF'
import pytest


def add(a, b):
    return a + b


def test_adds():
    assert add(1, 2) == 3


def test_adds_wrong():
    assert add(2, 2) == 5


@pytest.mark.skip(reason="slow")
def test_slow():
    pass


class TestMore:
    def test_raises(self):
        raise ValueError("boom")
EOF
cat >$W/py/test_other.py <<'EOF'
def test_one():
    assert True


def test_two():
    assert True
EOF
capture pytest $W/py python3 -m pytest -p no:cacheprovider

# ── JavaScript: node, eslint, vitest, jest, npm ─────────────────────────────────────────────────
mkdir -p $W/js
cat >$W/js/crash.js <<'EOF'
function load(config) {
  return config.settings.value;
}

load({});
EOF
capture node-error $W/js node crash.js
cat >$W/js/package.json <<'EOF'
{ "name": "js-fixtures", "version": "1.0.0", "private": true, "type": "commonjs" }
EOF
capture npm-install $W/js npm install --no-audit --no-fund eslint@10.15.0 jest@30.5.2
cat >$W/js/eslint.config.js <<'EOF'
module.exports = [{ files: ["**/*.js"], rules: { "no-unused-vars": "error", "no-undef": "error", "eqeqeq": "warn" } }];
EOF
cat >$W/js/lint.js <<'EOF'
const unused = 1;
if (value == 2) {
  console.log("two");
}
EOF
capture eslint $W/js npx eslint lint.js crash.js
cat >$W/js/sum.test.js <<'EOF'
const sum = (a, b) => a + b;

describe("sum", () => {
  test("adds", () => {
    expect(sum(1, 2)).toBe(3);
  });
  test("adds wrong", () => {
    expect(sum(2, 2)).toBe(5);
  });
  test.skip("slow", () => {});
});
EOF
echo 'test("other", () => { expect(1).toBe(1); });' >$W/js/other.test.js
capture jest $W/js npx jest --ci
mkdir -p $W/vt
cp $W/js/sum.test.js $W/js/other.test.js $W/vt/
echo 'export default { test: { globals: true } };' >$W/vt/vitest.config.mjs
capture vitest $W/vt "$ROOT/node_modules/.bin/vitest" run --root .
capture vitest-color $W/vt env -u NO_COLOR FORCE_COLOR=1 "$ROOT/node_modules/.bin/vitest" run --root .
