#!/bin/sh
# FPM Doctor plugin update (DirectAdmin runs it as root after replacing the
# plugin folder): the same as install, which is idempotent and never
# overwrites the config.
set -eu
exec sh "$(dirname "$0")/install.sh" "$@"
