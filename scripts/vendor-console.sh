#!/usr/bin/env bash
# Fetches the console's browser libraries from the npm registry (no Node toolchain), checks
# each tarball against npm's pinned sha512, and copies the browser file and its license into
# control-api/console/vendor/<name>-<version>/, with SHA256SUMS over all of them (which the
# test script checks offline). `--check` fetches into a scratch directory and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
out=control-api/console/vendor
registry=https://registry.npmjs.org
packages=( # name|version|npm integrity|directory|files of the package
  "@dagrejs/dagre|3.1.3|sha512-X4aUTwOReZvthaZWOVHqlJ52/ZdhZFEM4+Lh/uR4XooUSLE6p71bcy7MPGzYnNUcNh+nj+i/qJQpCMIdQnSmrg==|dagre-3.1.3|dist/dagre.esm.js dist/dagre.esm.js.LEGAL.txt LICENSE"
  "uplot|1.6.32|sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==|uplot-1.6.32|dist/uPlot.esm.js dist/uPlot.min.css LICENSE"
  "eventsource-parser|4.1.3|sha512-jZVIVilXZfAx6H20ZKKEj5dabbpD9ETmMj3uHsjMmgBzBHB6tsHrmdWB4mAiy3amtN6MOoVkfXRQu4wf1n88Rw==|eventsource-parser-4.1.3|dist/index.js dist/parse.js dist/errors.js LICENSE"
)
dest=$out
[[ ${1:-} == --check ]] && dest=$(mktemp -d)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for p in "${packages[@]}"; do
  IFS='|' read -r name version integrity dir files <<<"$p"
  curl -fsSL --retry 3 "$registry/$name/-/${name##*/}-$version.tgz" -o "$tmp/package.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tmp/package.tgz" | base64 -w0)"
  [[ $got == "$integrity" ]] || { echo "$name@$version: the tarball is not the one pinned" >&2; exit 1; }
  rm -rf "$tmp/x" && mkdir "$tmp/x" && tar xzf "$tmp/package.tgz" -C "$tmp/x"
  rm -rf "${dest:?}/$dir" && mkdir -p "$dest/$dir"
  for f in $files; do cp "$tmp/x/package/$f" "$dest/$dir/"; done
done
(cd "$dest" && find . -type f ! -name SHA256SUMS | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
if [[ ${1:-} == --check ]]; then
  diff -r "$dest" "$out" && echo "vendored libraries: as pinned"
fi
