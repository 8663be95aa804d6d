#!/bin/sh
# /usr/bin/manyi of the manyi package: the binary (/usr/lib/manyi/manyi) with
# what the service gets: the configuration /etc/manyi/manyi.toml unless
# --config or MANYI_CONFIG says otherwise, and the variables of
# /etc/manyi/secrets.env (the rater key) when this user may read them.
# Run it as the service user so files it writes stay the service's:
#   sudo -u manyi manyi check
: "${MANYI_CONFIG:=/etc/manyi/manyi.toml}"
export MANYI_CONFIG
if [ -r /etc/manyi/secrets.env ]; then
    set -a
    . /etc/manyi/secrets.env
    set +a
fi
exec /usr/lib/manyi/manyi "$@"
