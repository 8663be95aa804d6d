#!/bin/sh
# What the manyi package cannot ship as files, done at install and upgrade
# by the .deb postinst, the .rpm %post and install.sh alike. Idempotent.
#   - the system user and group `manyi` (no login, home /var/lib/manyi);
#   - /var/lib/manyi owned by manyi, 0750 (reports and state.db hold
#     personal data), with the two inboxes of the shipped configuration;
#   - /etc/manyi/secrets.env (root:manyi, 0640) with a new random rater key,
#     only when the file does not exist: an upgrade keeps the key.
set -e

if ! getent group manyi >/dev/null 2>&1; then
    groupadd --system manyi
fi
if ! getent passwd manyi >/dev/null 2>&1; then
    nologin=$(command -v nologin 2>/dev/null || true)
    [ -n "$nologin" ] || nologin=/sbin/nologin
    [ -x "$nologin" ] || nologin=/bin/false
    useradd --system --gid manyi --home-dir /var/lib/manyi --no-create-home \
        --shell "$nologin" --comment "manyi satisfaction reports" manyi
fi

install -d -m 0750 -o manyi -g manyi /var/lib/manyi
chown manyi:manyi /var/lib/manyi
chmod 0750 /var/lib/manyi
for d in /var/lib/manyi/inbox /var/lib/manyi/inbox/ratings /var/lib/manyi/inbox/wjx; do
    [ -d "$d" ] || install -d -m 0750 -o manyi -g manyi "$d"
done

install -d -m 0755 /etc/manyi
if [ ! -e /etc/manyi/secrets.env ]; then
    key=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    tmp=/etc/manyi/secrets.env.tmp.$$
    (
        umask 077
        printf '%s\n' \
            "# Secrets of manyi, read by the service (EnvironmentFile=) and by /usr/bin/manyi." \
            "# Generated at install; back up MANYI_RATER_KEY with the data: without it" \
            "# repeat raters stored so far cannot be recognised. Add e.g. MANYI_SMTP_PASSWORD=…" \
            "MANYI_RATER_KEY=$key" >"$tmp"
    )
    chown root:manyi "$tmp"
    chmod 0640 "$tmp"
    mv "$tmp" /etc/manyi/secrets.env
fi
