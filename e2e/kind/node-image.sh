# Builds, offline, the kind node image and every image the cluster pulls (sourced by e2e/kind/up).
#
# Nothing comes from a container registry: the bases are Debian root file systems made by
# debootstrap (e2e/toolchain/kind), the binaries are built from their Go modules. Images carry a
# key of everything they are made from (versions.env, these scripts, the binaries and root file
# systems), so a second run finds them in the engine and builds nothing.
# shellcheck shell=bash
# Paths and names come from lib.sh, sourced first.
# shellcheck disable=SC2154

# set_image_key: sets image_key_value, the content key of the images of this checkout.
set_image_key() {
    image_key_value="$({
        cat "$repo/e2e/toolchain/versions.env" "$kind_dir/node-image.sh" "$kind_dir/oxcd-runc" \
            "$kind_dir"/node/* "$kind_dir/manifests/local-path-storage.yaml"
        # the built inputs, by size and time (a rebuild changes them)
        stat -L -c '%n %s %Y' "$kc"/rootfs/*.tar "$k8s_bin"/* "$kind_bin"/* "$cache/bin/etcd-3.6"
    } | sha256sum | cut -c1-12)"
}

# Every image built here carries the key of its inputs in this label; an image whose label differs
# (built by another checkout or an older version of these scripts) is rebuilt.
key_label=oxcd.kind.key
have_image() {
    [[ "$(docker image inspect -f "{{index .Config.Labels \"$key_label\"}}" "$1" 2>/dev/null)" \
        == "$image_key_value" ]]
}

# import_rootfs NAME TAG [CHANGE...]: docker import of the rootfs tarball NAME as TAG.
import_rootfs() {
    local name="$1" tag="$2"
    shift 2
    have_image "$tag" && return
    local changes=(--change "LABEL $key_label=$image_key_value") c
    for c in "$@"; do changes+=(--change "$c"); done
    docker import "${changes[@]}" "$kc/rootfs/$name.tar" "$tag" >/dev/null
}

# quiet_build ARGS...: docker build, printing its output only when it fails (the Docker CLI
# warns on every build that the legacy builder is deprecated; BuildKit needs the buildx plugin).
quiet_build() {
    local out
    out="$(mktemp)"
    if ! docker build -q "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        die "docker build $* failed"
    fi
    rm -f "$out"
}

# build_image TAG CONTEXT DOCKERFILE-TEXT: docker build unless TAG exists.
build_image() {
    local tag="$1" context="$2" dockerfile="$3"
    have_image "$tag" && return
    printf '%s\n' "$dockerfile" >"$context/Dockerfile"
    quiet_build --label "$key_label=$image_key_value" -t "$tag" "$context"
}

# The images the cluster pulls through the local registry: NAME=TAG lines, NAME as the pods ask.
pause_image=registry.k8s.io/pause:3.10.1
etcd_image=registry.k8s.io/etcd:3.6.5-0
coredns_image="registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
kube_router_image="docker.io/cloudnativelabs/kube-router:$KUBE_ROUTER_VERSION"
local_path_image="docker.io/rancher/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION"
busybox_image=oxcd.local/busybox:1.35
cluster_images() {
    local c
    for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
        echo "registry.k8s.io/$c:$KUBERNETES_VERSION"
    done
    echo "$pause_image" "$etcd_image" "$coredns_image" "$kube_router_image" "$local_path_image" \
        "$busybox_image" | tr ' ' '\n'
}

# build_cluster_images KEY: every image of cluster_images, built from the base rootfs.
build_cluster_images() {
    local key="$1" base="oxcd.local/debian-base:$DEBIAN_SUITE-$1" ctx="$kc/build/images"
    import_rootfs base "$base"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    local c
    for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
        cp -L "$k8s_bin/$c" "$ctx/$c"
        build_image "registry.k8s.io/$c:$KUBERNETES_VERSION" "$ctx" \
            "FROM $base
COPY $c /usr/local/bin/$c
ENTRYPOINT [\"/usr/local/bin/$c\"]"
        rm -f "$ctx/$c"
    done
    # The pause container: our own static C program (kind nodes use the image as pod sandbox).
    if ! have_image "$pause_image"; then
        cc -static -Os -o "$ctx/pause" "$kind_dir/node/pause.c"
        build_image "$pause_image" "$ctx" "FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT [\"/pause\"]"
    fi
    # kubeadm names etcd's image by its own pinned tag; the etcd inside is the reference build.
    if ! have_image "$etcd_image"; then
        cp -L "$cache/bin/etcd-3.6" "$ctx/etcd"
        cp -L "$cache/bin/etcdctl-3.6" "$ctx/etcdctl"
        build_image "$etcd_image" "$ctx" "FROM $base
COPY etcd etcdctl /usr/local/bin/"
    fi
    # As root: it binds port 53 (upstream's image gives the binary that capability instead).
    if ! have_image "$coredns_image"; then
        cp -L "$kind_bin/coredns" "$ctx/coredns"
        build_image "$coredns_image" "$ctx" "FROM $base
COPY coredns /coredns
ENTRYPOINT [\"/coredns\"]"
    fi
    if ! have_image "$kube_router_image"; then
        cp -L "$kind_bin/kube-router" "$ctx/kube-router"
        build_image "$kube_router_image" "$ctx" "FROM $base
COPY kube-router /usr/local/bin/kube-router
ENTRYPOINT [\"/usr/local/bin/kube-router\"]"
    fi
    if ! have_image "$local_path_image"; then
        cp -L "$kind_bin/local-path-provisioner" "$ctx/local-path-provisioner"
        build_image "$local_path_image" "$ctx" "FROM $base
COPY local-path-provisioner /usr/bin/local-path-provisioner
ENTRYPOINT [\"/usr/bin/local-path-provisioner\"]"
    fi
    # busybox (Debian's static build) for local-path-provisioner's helper pods and test pods, on
    # the Debian base, whose glibc NSS modules the static busybox loads to resolve names. (Its
    # wget crashes here, static or not: tests talk HTTP through `nc`.)
    if ! have_image "$busybox_image"; then
        cp /bin/busybox "$ctx/busybox"
        build_image "$busybox_image" "$ctx" "FROM $base
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/usr/local/bin\"]
ENTRYPOINT [\"/bin/sh\"]"
    fi
}

# build_node_image TAG KEY: the kind node image, assembled as kind's own base image is, from the
# node rootfs (systemd, containerd, runc, CNI plugins from Debian), kind's base files, the
# Kubernetes node binaries, our runc wrapper and the registry mirrors.
build_node_image() {
    local tag="$1" key="$2" ctx="$kc/build/node"
    have_image "$tag" && return
    local rootfs="oxcd.local/kind-node-rootfs:$DEBIAN_SUITE-$key"
    import_rootfs node "$rootfs"
    rm -rf "$ctx"
    mkdir -p "$ctx/bin" "$ctx/kind/manifests"
    cp -R "$kc/kind-src/$KIND_VERSION/images/base/files" "$ctx/files"
    local c
    for c in kubeadm kubelet kubectl; do cp -L "$k8s_bin/$c" "$ctx/bin/$c"; done
    cp "$kind_dir/oxcd-runc" "$ctx/oxcd-runc"
    cp "$kind_dir/node/containerd-patch.toml" "$ctx/containerd-patch.toml"
    echo "$KUBERNETES_VERSION" >"$ctx/kind/version"
    # kind applies this as the cluster's default storage (StorageClass "standard").
    sed -e "s|@LOCAL_PATH_IMAGE@|$local_path_image|; s|@BUSYBOX_IMAGE@|$busybox_image|" \
        "$kind_dir/manifests/local-path-storage.yaml" >"$ctx/kind/manifests/default-storage.yaml"
    # containerd asks the local registry for every image, whatever registry its name says.
    local host
    for host in registry.k8s.io docker.io oxcd.local; do
        mkdir -p "$ctx/certs.d/$host"
        printf 'server = "https://%s"\n\n[host."http://%s:5000"]\n  capabilities = ["pull", "resolve"]\n' \
            "$host" "$registry_name" >"$ctx/certs.d/$host/hosts.toml"
    done
    sed -e "s|@ROOTFS@|$rootfs|; s|@PAUSE_IMAGE@|$pause_image|" \
        "$kind_dir/node/Dockerfile" >"$ctx/Dockerfile"
    quiet_build --label "$key_label=$image_key_value" -t "$tag" "$ctx"
}
