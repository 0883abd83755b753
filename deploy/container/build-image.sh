#!/usr/bin/env bash
# make image: build the Bento from the model store ($BENTOML_HOME) and turn it into a container
# image on the local engine: Docker where a Docker daemon answers, else buildah (podman's storage).
#
#   IMAGE=digits_and_signs:latest   the tag (podman storage shows it as localhost/digits_and_signs:latest)
#   BENTOFILE=bentofile.yaml        the Bento to build (bentofile.gpu.yaml: the GPU variant)
#   BENTOML=bentoml                 the project environment's bentoml
#   CONTAINERIZE_OPTS="..."         extra `bentoml containerize` options (e.g. --opt build-arg=K=V)
#   CONTAINER_ENGINE=docker|buildah choose the engine instead of the detection above
#
# With podman/buildah the engine settings of deploy/container/containers.conf apply where this
# host needs them (deploy/container/engine-conf.sh says), unless CONTAINERS_CONF names others.
# When the base image (python:3.11-slim) is not in local storage and cannot be pulled,
# deploy/container/base-image.sh builds a local stand-in (see docs/deploy.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
IMAGE=${IMAGE:-digits_and_signs:latest}
BENTOFILE=${BENTOFILE:-bentofile.yaml}
BENTOML=${BENTOML:-bentoml}
# a relative path (make passes .venv/bin/bentoml) must survive the cd into the build directory below
case $BENTOML in */*) BENTOML="$(cd "$(dirname "$BENTOML")" && pwd)/$(basename "$BENTOML")" ;; esac
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.11-slim}
read -r -a extra_opts <<<"${CONTAINERIZE_OPTS:-}"

engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ] && docker info >/dev/null 2>&1; then
    engine=docker
elif [ -z "$engine" ] && command -v buildah >/dev/null && command -v podman >/dev/null; then
    engine=buildah
fi
if [ "$engine" = buildah ]; then
    CONTAINERS_CONF=${CONTAINERS_CONF:-$("$here/engine-conf.sh")}
    [ -z "$CONTAINERS_CONF" ] || export CONTAINERS_CONF
elif [ "$engine" != docker ]; then
    echo "build-image.sh: no container engine. Either start Docker, or install podman, buildah," >&2
    echo "  runc and debootstrap (Debian/Ubuntu: make image-setup, i.e." >&2
    echo "  apt-get install -y podman buildah runc debootstrap)." >&2
    exit 1
fi

# 1. the Bento
cd "$repo"
bentofile=$BENTOFILE
started=$(date +%s)
tag=$("$BENTOML" build -f "$bentofile" --output tag | tail -1)
tag=${tag#__tag__:}
echo "build-image.sh: Bento $tag (from $bentofile)"

# 2. the base image, on an engine that cannot reach a registry (local workaround)
if [ "$engine" = buildah ] && ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    if ! timeout 60 buildah pull --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "build-image.sh: $BASE_IMAGE cannot be pulled; building the local stand-in"
        "$here/base-image.sh"
    fi
fi

# 3. the image. `bentoml containerize` puts the models from the store into the build context.
# It refuses a Dockerfile template outside its working directory, and its temporary build
# context is one: so it runs in a private temporary directory that is its working directory.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cli=podman
[ "$engine" = docker ] && cli=docker
previous=$($cli image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
if [ "$engine" = docker ]; then
    (cd "$work" && TMPDIR=$work "$BENTOML" containerize "$tag" -t "$IMAGE" "${extra_opts[@]}")
    size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
else
    (cd "$work" && TMPDIR=$work "$BENTOML" containerize --backend buildah "$tag" -t "$IMAGE" \
        --opt isolation=chroot --opt pull-never "${extra_opts[@]}")
    size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
fi
# the image this tag named before is now untagged: remove it unless a container still uses it
current=$($cli image inspect "$IMAGE" --format '{{.Id}}')
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    $cli rmi "$previous" >/dev/null 2>&1 || true
fi
echo "build-image.sh: $IMAGE ($engine) built in $(( $(date +%s) - started )) s, $size bytes"
