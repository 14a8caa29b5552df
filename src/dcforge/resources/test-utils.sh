#!/bin/bash
# dcforge's image-test helpers: the check/reportResults of devcontainers/images'
# test-utils.sh. dcforge puts this file next to an image test that has none, and reads
# the lines check prints ("🧪 Testing NAME", "✅  Passed!", "❌ NAME check failed.").
FAILED=()

echoStderr() {
    echo "$@" 1>&2
}

check() {
    LABEL=$1
    shift
    echo -e "\n🧪 Testing $LABEL"
    if "$@"; then
        echo "✅  Passed!"
        return 0
    else
        echoStderr "❌ $LABEL check failed."
        FAILED+=("$LABEL")
        return 1
    fi
}

checkMultiple() {
    PASSED=0
    LABEL="$1"
    echo -e "\n🧪 Testing $LABEL."
    shift; MINIMUMPASSED=$1
    shift; EXPRESSION="$1"
    while [ "$EXPRESSION" != "" ]; do
        if $EXPRESSION; then ((PASSED++)); fi
        shift; EXPRESSION=$1
    done
    if [ $PASSED -ge "$MINIMUMPASSED" ]; then
        echo "✅ Passed!"
        return 0
    else
        echoStderr "❌ $LABEL check failed."
        FAILED+=("$LABEL")
        return 1
    fi
}

reportResults() {
    if [ ${#FAILED[@]} -ne 0 ]; then
        echoStderr -e "\n💥  Failed tests: ${FAILED[*]}"
        exit 1
    else
        echo -e "\n💯  All passed!"
        exit 0
    fi
}
