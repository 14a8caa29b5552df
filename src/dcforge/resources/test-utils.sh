#!/bin/sh
# dcforge's image-test helpers: check, checkMultiple and reportResults as in
# devcontainers/images' test-utils.sh, in POSIX sh (busybox, dash and bash run it). dcforge
# puts this file next to an image test that has none, and reads the lines check prints:
# "🧪 Testing NAME", then "✅  Passed!" or "❌ NAME check failed.".
FAILED=""

# With DCFORGE_CHECK_NONCE set (dcforge sets it per run), each check also prints
# "dcforge-check NONCE start|pass|fail LABEL": what dcforge reads when it is there, so that
# a program under test printing "✅  Passed!" cannot pass a failed check.
_dcforge_mark() {
    if [ -n "${DCFORGE_CHECK_NONCE:-}" ]; then
        printf 'dcforge-check %s %s %s\n' "$DCFORGE_CHECK_NONCE" "$1" "$(printf '%s' "$2" | tr '\n\r' '  ')"
    fi
}

echoStderr() {
    echo "$@" 1>&2
}

check() {
    LABEL=$1
    shift
    printf '\n🧪 Testing %s\n' "$LABEL"
    _dcforge_mark start "$LABEL"
    if "$@"; then
        echo "✅  Passed!"
        _dcforge_mark pass "$LABEL"
        return 0
    else
        _dcforge_mark fail "$LABEL"
        echoStderr "❌ $LABEL check failed."
        FAILED="$FAILED
$LABEL"
        return 1
    fi
}

checkMultiple() {
    PASSED=0
    LABEL="$1"
    printf '\n🧪 Testing %s.\n' "$LABEL"
    _dcforge_mark start "$LABEL"
    shift; MINIMUMPASSED=$1
    shift; EXPRESSION="$1"
    while [ "$EXPRESSION" != "" ]; do
        if $EXPRESSION; then PASSED=$((PASSED + 1)); fi
        shift; EXPRESSION=$1
    done
    if [ "$PASSED" -ge "$MINIMUMPASSED" ]; then
        echo "✅ Passed!"
        _dcforge_mark pass "$LABEL"
        return 0
    else
        _dcforge_mark fail "$LABEL"
        echoStderr "❌ $LABEL check failed."
        FAILED="$FAILED
$LABEL"
        return 1
    fi
}

reportResults() {
    if [ -n "$FAILED" ]; then
        printf '\n💥  Failed tests:%s\n' "$(printf '%s' "$FAILED" | tr '\n' ' ')" 1>&2
        exit 1
    else
        printf '\n💯  All passed!\n'
        exit 0
    fi
}
