# The oxcd cluster a kind cluster's kube-apiserver stores in (e2e/kind/up
# --control-plane-storage=oxcd), sourced by e2e/kind/up and e2e/kind/down.
#
# Like kubeadm's stacked etcd, but outside the nodes: N members (3 by default) of the oxcd image
# as containers on the kind network, named <cluster>-storage-<i>, each with its data on the Docker
# volume <cluster>-storage-<i>-data, with client and peer mTLS (certificates made here with
# openssl, under $OXCD_CACHE/kind/storage-<cluster>/pki). kube-apiserver reaches them by their
# container names (Docker's DNS on the kind network, which kind's nodes forward to), with a client
# certificate delivered into the control-plane node by a kind extraMount; the host (tests,
# storagectl) reaches each member's client port published on 127.0.0.1.
# shellcheck shell=bash
# Paths and names come from lib.sh, sourced first.
# shellcheck disable=SC2154

storage_dir="$kc/storage-$cluster"
storage_label=oxcd.kind.storage
# Where the control-plane node sees the apiserver's client certificate (a kind extraMount of
# $storage_dir/pki/apiserver). Outside /etc/kubernetes/pki, so kubeadm mounts it into the
# kube-apiserver pod by itself (it adds a hostPath volume for external etcd certificate dirs).
storage_node_pki=/etc/oxcd-storage

storage_member() { printf '%s-storage-%d' "$cluster" "$1"; }

# storage_new_key FILE / storage_new_ca DIR CN / storage_new_cert DIR NAME SUBJECT USAGES [SANS]:
# ECDSA P-256 keys and certificates, as e2e/local/up makes them (and kubeadm's etcd has them).
storage_new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
storage_new_ca() {
    storage_new_key "$1/ca.key"
    openssl req -x509 -new -key "$1/ca.key" -subj "/CN=$2" -days 3650 -out "$1/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}
storage_new_cert() {
    local pki="$1" name="$2" subject="$3" usages="$4" sans="${5:-}"
    storage_new_key "$pki/$name.key"
    openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$usages"
        [[ -z $sans ]] || echo "subjectAltName=$sans"
    } >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 3650 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

# storage_certs MEMBERS: a fresh CA; per member a directory (mounted into its container) with the
# CA and one serving + peer certificate for its container name and 127.0.0.1 (the published
# port); the apiserver's client certificate; an admin client certificate for tests and storagectl.
storage_certs() {
    local members="$1" pki="$storage_dir/pki" i name
    rm -rf "$pki"
    mkdir -p "$pki/apiserver" "$pki/admin"
    chmod 700 "$pki"
    storage_new_ca "$pki" "oxcd-kind-$cluster-storage-ca"
    for ((i = 0; i < members; i++)); do
        name="$(storage_member "$i")"
        storage_new_cert "$pki" "$name" "/CN=$name" serverAuth,clientAuth \
            "DNS:$name,DNS:localhost,IP:127.0.0.1"
        mkdir -p "$pki/$name"
        cp "$pki/ca.crt" "$pki/$name/ca.crt"
        mv "$pki/$name.crt" "$pki/$name/member.crt"
        mv "$pki/$name.key" "$pki/$name/member.key"
        # The image runs as uid 65532, which must read the key through the bind mount: readable
        # by all inside this directory, which only pki's owner can reach (mode 700 above), so
        # neither root nor a chown is needed.
        chmod 755 "$pki/$name"
        chmod 644 "$pki/$name/member.key"
    done
    storage_new_cert "$pki" apiserver-etcd-client "/O=system:masters/CN=kube-apiserver-etcd-client" \
        clientAuth
    cp "$pki/ca.crt" "$pki/apiserver/ca.crt"
    mv "$pki/apiserver-etcd-client.crt" "$pki/apiserver-etcd-client.key" "$pki/apiserver/"
    storage_new_cert "$pki" admin "/CN=root" clientAuth
    cp "$pki/ca.crt" "$pki/admin/ca.crt"
    mv "$pki/admin.crt" "$pki/admin.key" "$pki/admin/"
    chmod 600 "$pki/apiserver"/*.key "$pki/admin"/*.key
}

# storage_remove: removes the storage containers and volumes of this cluster (found by label, so
# any member count), and its certificates. Idempotent.
storage_remove() {
    local ids vols
    ids="$(docker ps -aq --filter "label=$storage_label=$cluster")"
    # shellcheck disable=SC2086 # a list of ids
    [[ -z $ids ]] || docker rm -f -v $ids >/dev/null
    vols="$(docker volume ls -q --filter "label=$storage_label=$cluster")"
    # shellcheck disable=SC2086 # a list of names
    [[ -z $vols ]] || docker volume rm $vols >/dev/null
    rm -rf "$storage_dir"
}

# storage_start MEMBERS IMAGE: a fresh oxcd cluster of MEMBERS members (after removing the
# previous one: a new kind cluster needs empty storage), then waits until every member is healthy
# and the member list is complete. Sets storage_endpoints (in the kind network) and
# storage_host_endpoints (published on 127.0.0.1), and writes $storage_dir/bin/storagectl.
storage_start() {
    local members="$1" image="$2" i name initial="" token
    storage_remove
    mkdir -p "$storage_dir/bin"
    storage_certs "$members"
    for ((i = 0; i < members; i++)); do
        name="$(storage_member "$i")"
        initial+="${initial:+,}$name=https://$name:2380"
    done
    token="kind-$cluster-$(date +%s)"
    storage_endpoints=""
    for ((i = 0; i < members; i++)); do
        name="$(storage_member "$i")"
        storage_endpoints+="${storage_endpoints:+,}https://$name:2379"
        docker volume create --label "$storage_label=$cluster" "$name-data" >/dev/null
        # etcd's flags (oxcd takes the same ones); listening on every address of the container,
        # which only the kind network and the published loopback port reach.
        docker run -d --name "$name" --hostname "$name" --network kind --restart no \
            --label "$storage_label=$cluster" \
            -v "$name-data:/data" -v "$storage_dir/pki/$name:/pki:ro" \
            -p 127.0.0.1::2379 \
            "$image" \
            --name "$name" --data-dir /data/member \
            --listen-client-urls https://0.0.0.0:2379 --advertise-client-urls "https://$name:2379" \
            --listen-peer-urls https://0.0.0.0:2380 --initial-advertise-peer-urls "https://$name:2380" \
            --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "$token" \
            --cert-file /pki/member.crt --key-file /pki/member.key \
            --client-cert-auth --trusted-ca-file /pki/ca.crt \
            --peer-cert-file /pki/member.crt --peer-key-file /pki/member.key \
            --peer-client-cert-auth --peer-trusted-ca-file /pki/ca.crt >/dev/null
    done
    storage_host_endpoints=""
    local port
    for ((i = 0; i < members; i++)); do
        port="$(docker port "$(storage_member "$i")" 2379/tcp | head -n 1)"
        port="${port##*:}"
        [[ $port =~ ^[0-9]+$ ]] || die "no published client port for $(storage_member "$i")"
        storage_host_endpoints+="${storage_host_endpoints:+,}https://127.0.0.1:$port"
    done
    {
        echo '#!/usr/bin/env bash'
        echo "# etcdctl for the oxcd storage of kind cluster $cluster (made by e2e/kind/up)"
        printf 'exec %q --endpoints=%q --cacert=%q --cert=%q --key=%q "$@"\n' \
            "$cache/bin/etcdctl-3.6" "$storage_host_endpoints" "$storage_dir/pki/admin/ca.crt" \
            "$storage_dir/pki/admin/admin.crt" "$storage_dir/pki/admin/admin.key"
    } >"$storage_dir/bin/storagectl"
    chmod +x "$storage_dir/bin/storagectl"
    local tries
    for tries in $(seq 60); do
        if "$storage_dir/bin/storagectl" endpoint health >/dev/null 2>&1 &&
            [[ "$("$storage_dir/bin/storagectl" member list 2>/dev/null | wc -l)" == "$members" ]]; then
            log "oxcd storage healthy after $tries tries: $storage_host_endpoints"
            return
        fi
        sleep 1
    done
    for ((i = 0; i < members; i++)); do
        log "--- last lines of $(storage_member "$i") ---"
        docker logs --tail 15 "$(storage_member "$i")" >&2 2>&1 || true
    done
    die "the oxcd storage is not healthy after 60 s"
}

# storage_kubeadm_patch: the kubeadmConfigPatches section of the kind config (up writes the
# control-plane node's extraMount of the certificates): external etcd, and the
# kube-apiserver settings the Kubernetes-on-oxcd suite (e2e/k8s-suite) expects, as
# e2e/local/up sets them: verbose enough to log storage errors, and no watch cache for
# podtemplates (their reads reach the storage). Not its short --event-ttl: other kind tests read
# Events minutes after they happen (the operator's membership changes), so the default 1h stays.
storage_kubeadm_patch() {
    local endpoints=() e
    IFS=, read -r -a endpoints <<<"$storage_endpoints"
    printf 'kubeadmConfigPatches:\n  - |\n    kind: ClusterConfiguration\n'
    printf '    etcd:\n      external:\n        endpoints:\n'
    for e in "${endpoints[@]}"; do printf '          - %s\n' "$e"; done
    printf '        caFile: %s/ca.crt\n' "$storage_node_pki"
    printf '        certFile: %s/apiserver-etcd-client.crt\n' "$storage_node_pki"
    printf '        keyFile: %s/apiserver-etcd-client.key\n' "$storage_node_pki"
    printf '    apiServer:\n      extraArgs:\n'
    printf '        v: "2"\n'
    printf '        watch-cache-sizes: "podtemplates#0"\n'
}
