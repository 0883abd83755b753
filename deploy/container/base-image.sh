#!/usr/bin/env bash
# LOCAL WORKAROUND, for a machine that reaches no container registry (the development machine and
# its CI): builds a stand-in for the Bento's base image, docker.io/library/python:3.11-slim, from
# Debian packages, and tags it with that name in local podman/buildah storage. On a normal machine
# the real image is pulled and this script is never needed.
#
#   deploy/container/base-image.sh          # no-op when the image is already in local storage
#   BASE_IMAGE=... DEBIAN_MIRROR=... deploy/container/base-image.sh
#
# The stand-in is Debian bookworm (minbase) with its Python 3.11, pip and venv, as in the real
# image, plus the host's extra CA certificates (a TLS-intercepting egress on this machine) so that
# pip and uv inside the image build reach the package index. The Debian mirror is the host's own
# (from its apt sources) unless DEBIAN_MIRROR says otherwise. Needs root, buildah and debootstrap.
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.11-slim}
SUITE=${SUITE:-bookworm}

if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "base image $BASE_IMAGE: already in local storage"
    exit 0
fi
for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || { echo "base-image.sh: $tool is missing (make image-setup installs it)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "base-image.sh: debootstrap needs root" >&2; exit 1; }

host_mirror() {  # the first Debian archive URI of the host's apt sources (deb822 or one-line format)
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "$uri"
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
[ -n "$MIRROR" ] || { echo "base-image.sh: no Debian mirror found; set DEBIAN_MIRROR" >&2; exit 1; }

started=$(date +%s)
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
root=$(buildah mount "$ctr")

echo "base-image.sh: debootstrap $SUITE (minbase + python3) into a scratch container"
debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    "$SUITE" "$root" "$MIRROR" >/tmp/base-image-debootstrap.log 2>&1 \
    || { tail -20 /tmp/base-image-debootstrap.log >&2; exit 1; }

# apt inside the image build (the Bento's Dockerfile installs packages) uses the host's sources
# and settings (e.g. a snapshot mirror whose Release files are past their Valid-Until date)
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/"
    : >"$root/etc/apt/sources.list"
fi
for conf in /etc/apt/apt.conf.d/*; do
    if grep -qs "Check-Valid-Until" "$conf"; then cp "$conf" "$root/etc/apt/apt.conf.d/"; fi
done
# the host's extra CA certificates, so that TLS to the package index verifies inside the build
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
chroot "$root" update-ca-certificates >/dev/null
# like the real image: pip may install into the system Python
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log

buildah umount "$ctr" >/dev/null
buildah config \
    --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --env UV_NATIVE_TLS=true \
    --label org.opencontainers.image.description="local stand-in for python:3.11-slim (Debian $SUITE python3)" \
    --cmd python3 "$ctr"
buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
trap - EXIT
echo "base-image.sh: $BASE_IMAGE built in $(( $(date +%s) - started )) s"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE"
