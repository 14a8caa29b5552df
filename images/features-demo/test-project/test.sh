#!/bin/sh
# Image test, as devcontainers/images writes them: runs in the built image as its
# remoteUser, with no network; test-utils.sh (check, reportResults) is dcforge's.
cd "$(dirname "$0")" || exit 1
# shellcheck source=/dev/null
. ./test-utils.sh

check "remote user" test "$(id -un)" = vscode
check "home directory" test -w "$HOME"
check "login message" grep -q "Welcome to dcforge" /etc/motd
check "feature command" dev-user-info
check "feature environment" test "$DEV_USER_FEATURE" = 1.0.0
reportResults
