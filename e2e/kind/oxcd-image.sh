# Images of our own binaries from deploy/Dockerfile, shared by e2e/kind/up (the oxcd image of
# --control-plane-storage=oxcd) and e2e/kind/images (oxcd and oxcd-operator, loaded into the
# cluster), so both use the same image and neither rebuilds what the other built.
#
# The binaries come from the host's cargo (release build; cargo's own cache makes a second build
# take seconds), the runtime files from the Debian base image imported from the base rootfs. Each
# image is labelled with the key of its inputs (the base image's key and the stripped binary's
# hash): an image with the same key is reused without running docker build.
# shellcheck shell=bash
# Paths, names and helpers come from lib.sh and node-image.sh, sourced first.
# shellcheck disable=SC2154
# The image names are used by the scripts that source this file.
# shellcheck disable=SC2034

oxcd_image=oxcd.local/oxcd:dev
operator_image=oxcd.local/oxcd-operator:dev
binary_image_label=oxcd.image.key

# build_binaries BIN...: cargo build --release of BIN..., stripped into target/image-bin/ (the
# directory deploy/Dockerfile copies prebuilt binaries from).
build_binaries() {
    local args=() b target
    for b in "$@"; do args+=(--bin "$b"); done
    (cd "$repo" && cargo build --release --quiet --workspace "${args[@]}")
    target="$(cd "$repo" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
    mkdir -p "$repo/target/image-bin"
    # Without debug info (the release profile keeps line tables for backtraces): 10x smaller.
    for b in "$@"; do
        strip --strip-debug -o "$repo/target/image-bin/$b.tmp" "$target/release/$b"
        mv -f "$repo/target/image-bin/$b.tmp" "$repo/target/image-bin/$b"
    done
}

# build_binary_image BIN TAG: the deploy/Dockerfile target BIN from target/image-bin/BIN, as TAG,
# unless TAG already holds that binary on this base. Needs set_image_key (node-image.sh).
build_binary_image() {
    local bin="$1" tag="$2" base="oxcd.local/debian-base:$DEBIAN_SUITE-$image_key_value" key
    import_rootfs base "$base"
    key="$image_key_value-$(sha256sum "$repo/target/image-bin/$bin" | cut -c1-16)"
    if [[ "$(docker image inspect -f "{{index .Config.Labels \"$binary_image_label\"}}" "$tag" \
        2>/dev/null)" == "$key" ]]; then
        log "$tag: up to date"
        return
    fi
    quiet_build -f "$repo/deploy/Dockerfile" --target "$bin" --build-arg "BINARY=$bin" \
        --build-arg "RUST_IMAGE=$base" --build-arg "BASE_IMAGE=$base" \
        --label "$binary_image_label=$key" -t "$tag" "$repo"
    log "$tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')"
}
