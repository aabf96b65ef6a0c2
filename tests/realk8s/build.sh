#!/bin/bash
# Builds the real Kubernetes, etcd, cri-dockerd, crictl and CNI binaries of the VM proof from their Go
# modules into a cache outside the repository, one directory per module folder below tests/realk8s/.
# A folder is rebuilt only when its go.mod/go.sum change: the second run costs nothing.
#   tests/realk8s/build.sh [FOLDER...]    (default: every folder)
# K8SSEED_REAL_CACHE (default /var/cache/k8sseed-real) holds <folder>/bin and a stamp.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${K8SSEED_REAL_CACHE:-/var/cache/k8sseed-real}"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Part of every stamp: raise it when a change here changes what gets built (flags, names), so that all rebuild.
STAMP_FORMAT=2

# Upstream's hack/lib/version.sh stamps the release into these variables; kubeadm picks its image tags
# and version checks from them, so an unstamped build would ask for images of "v0.0.0-master".
version_ldflags() {
    local version="$1" commit="$2" date="$3" major minor pkg flags=""
    major="${version#v}"; major="${major%%.*}"
    minor="${version#v*.}"; minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$version -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean"
        flags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.buildDate=$date"
    done
    printf '%s' "$flags"
}

# The required module that the folder's first tool belongs to, and its version (tidy marks it indirect).
main_requirement() {
    (cd "$1" && go mod edit -json) | python3 -c '
import json, sys
mod = json.load(sys.stdin)
tool = mod["Tool"][0]["Path"]
owners = [r for r in mod["Require"] if tool == r["Path"] or tool.startswith(r["Path"] + "/")]
best = max(owners, key=lambda r: len(r["Path"]))
print(best["Path"], best["Version"])'
}

build_folder() {
    local dir="$1" name stamp out tools path version info commit date ldflags="-s -w"
    name="$(basename "$dir")"
    out="$cache/$name/bin"
    stamp="$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16)-$STAMP_FORMAT"
    if [[ -f "$dir/ldflags" ]]; then stamp="$(cat "$dir/ldflags" - <<<"$stamp" | sha256sum | cut -c1-16)"; fi
    if [[ -f "$cache/$name/stamp" && "$(cat "$cache/$name/stamp")" == "$stamp" ]]; then
        echo "real-k8s: $name is built already ($out)"
        return
    fi
    mapfile -t tools < <(cd "$dir" && go mod edit -json | python3 -c '
import json, sys
print("\n".join(t["Path"] for t in json.load(sys.stdin)["Tool"]))')
    read -r path version < <(main_requirement "$dir")
    if [[ "$path" == k8s.io/kubernetes ]]; then
        info="$(cd "$dir" && go mod download -json "$path@$version")"
        commit="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Origin"]["Hash"])' <<<"$info" 2>/dev/null || echo unknown)"
        date="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Time"])' <<<"$info" 2>/dev/null || echo unknown)"
        ldflags+="$(version_ldflags "$version" "$commit" "$date")"
    fi
    # A folder's own stamps (cri-dockerd, crictl and the CNI plugins print their version from these).
    if [[ -f "$dir/ldflags" ]]; then ldflags+=" $(cat "$dir/ldflags")"; fi
    echo "real-k8s: $name: downloading the modules of $path $version"
    (cd "$dir" && go mod download)
    rm -f "$cache/$name/stamp"  # no stamp while bin/ is being rebuilt: readers never take a half-built folder
    rm -rf "$out" && mkdir -p "$out"
    local i=0 started=$SECONDS tool
    for tool in "${tools[@]}"; do
        i=$((i + 1))
        echo "real-k8s: $name: [$i/${#tools[@]}] $tool ($((SECONDS - started)) s so far)"
        (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out/" "$tool")
    done
    finish_folder "$dir" "$out"
    echo "$stamp" > "$cache/$name/stamp"
    echo "real-k8s: $name done in $((SECONDS - started)) s: $(du -sh "$out" | cut -f1) in $out"
}

# Names that differ between a Go package and the binary users know (etcd's server package is "server").
finish_folder() {
    local dir="$1" out="$2"
    if [[ -f "$out/server" ]]; then mv "$out/server" "$out/etcd"; fi
    if [[ -f "$dir/after-build.sh" ]]; then bash "$dir/after-build.sh" "$out"; fi
}

folders=("$@")
if [[ ${#folders[@]} -eq 0 ]]; then
    for dir in "$here"/*/; do [[ -f "$dir/go.mod" ]] && folders+=("$(basename "$dir")"); done
fi
mkdir -p "$cache"
for name in "${folders[@]}"; do build_folder "$here/$name"; done
echo "real-k8s: cache $cache uses $(du -sh "$cache" | cut -f1); Go's build cache $(du -sh "$(go env GOCACHE)" | cut -f1), module cache $(du -sh "$(go env GOMODCACHE)" | cut -f1)"
