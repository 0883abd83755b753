#!/bin/sh
# Prints the path of deploy/container/containers.conf when this host needs it for podman/buildah,
# and nothing where the engine's defaults work. Needed on a cgroup v1 or hybrid layout (crun fails
# there) or under a hard open-files limit below podman's default ulimit (1048576), as on the
# development machine and its CI. Used by the Makefile, build-image.sh and the image tests.
here=$(cd "$(dirname "$0")" && pwd)
needs=""
[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] || needs=yes
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$hard" -ge 1048576 ] || needs=yes
[ -z "$needs" ] || echo "$here/containers.conf"
