#!/bin/bash
# Runs INSIDE the booted container (unit mydex-systemd-test.service), as root,
# on a minimal Debian bookworm that has only systemd, dbus, apt and the
# Essential set. Follows docs/book/src/install.md command for command,
# then checks the service through systemd itself. Each check prints one line
# "PASS name: detail" or "FAIL name: detail" to $RESULTS/results.txt (and the
# console); the last line is "DONE failures=N". Nothing but bash and what the
# package pulls in is used here: HTTP goes through bash's /dev/tcp.
#
# Inputs (from tests/systemd/run.sh): /root/pkg/mydex-connector.deb,
# /usr/local/bin/mydex-connector-sandbox, /mnt/tests/ (this directory,
# read-only) and $RESULTS/ports (SANDBOX_PORT, CALLBACK_PORT, ADMIN_PORT).
set -uo pipefail
RESULTS=${1:-/mnt/results}
OUT=$RESULTS/results.txt
: > "$OUT"
failures=0
export DEBIAN_FRONTEND=noninteractive
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0
CONF=/etc/mydex-connector/mydex-connector.toml
CREDS=/etc/mydex-connector/credentials
STATE=/var/lib/private/mydex-connector
OUTBOX=$STATE/outbox
WORK=$(mktemp -d)
# shellcheck disable=SC1091
. "$RESULTS/ports"

pass() { echo "PASS  $1: $2" | tee -a "$OUT"; }
fail() { echo "FAIL  $1: $2" | tee -a "$OUT"; failures=$((failures + 1)); }
info() { echo "INFO  $1: $2" | tee -a "$OUT"; }
log() { echo "----  $*" >&2; }
finish() {
    journalctl --no-pager -o short-precise > "$RESULTS/journal-all.txt" 2>&1
    echo "DONE failures=$failures" | tee -a "$OUT"
    exit $((failures > 0))
}

# http METHOD PORT PATH [JSON-BODY]: the body to $WORK/body, the status to $HTTP_STATUS.
http() {
    local method=$1 port=$2 path=$3 body=${4-}
    HTTP_STATUS=000
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
        "$method" "$path" "$port" "$(printf '%s' "$body" | wc -c)" "$body" >&3
    cat <&3 > "$WORK/response"
    exec 3<&-
    HTTP_STATUS=$(head -n1 "$WORK/response" | cut -d' ' -f2)
    sed '1,/^\r$/d' "$WORK/response" > "$WORK/body"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
prop() { systemctl show -p "$1" --value mydex-connector; }
mainpid() { prop MainPID; }
# status_json: `mydex-connector status --json`, flattened to one line.
status_json() { mydex-connector status --config "$CONF" --json 2>>"$WORK/status.err" | tr -d ' \n'; }
members_total() { status_json | grep -o '"members":{[^}]*}' | grep -o '"total":[0-9]*' | cut -d: -f2; }
wait_for() { # wait_for SECONDS COMMAND...: until the command succeeds
    local limit=$1 i=0
    shift
    while ! "$@"; do
        i=$((i + 1))
        [ "$i" -ge $((limit * 2)) ] && return 1
        sleep 0.5
    done
}
mails() { ls "$OUTBOX"/*.eml 2>/dev/null | wc -l; }
# Distinct recipients in the outbox.
recipients() { for f in "$OUTBOX"/*.eml; do [ -e "$f" ] && sed '/^\r\?$/q' "$f" | grep -i '^To:'; done | sort -u | wc -l; }
# The first link in each mail to $1, oldest mail first (quoted-printable undone).
links_for() {
    local f
    # shellcheck disable=SC2045 # oldest first; the names are UUIDs
    for f in $(ls -tr "$OUTBOX"/*.eml 2>/dev/null); do
        if sed '/^\r\?$/q' "$f" | grep -qi "^To:.*$1"; then
            sed -e ':a' -e '/=\r\?$/{N;s/=\r\?\n//;ba}' "$f" | sed 's/=3D/=/g' |
                grep -o "http://127.0.0.1:$SANDBOX_PORT/ftc/begin/[A-Za-z0-9/_.~-]*" | head -n1
        fi
    done
}
# journey EMAIL MYDEXID: complete the newest link mailed to EMAIL as that member.
journey() {
    local link
    for link in $(links_for "$1" | tac); do
        http POST "$SANDBOX_PORT" /_sandbox/journeys "{\"url\":\"$link\",\"mydexid\":\"$2\",\"email\":\"$1\"}"
        [ "$HTTP_STATUS" = 200 ] && return 0
        log "journey $1 $link: $HTTP_STATUS $(cat "$WORK/body")"
    done
    return 1
}
members_are() { [ "$(members_total)" = "$1" ]; }
# restarted_after PID N0: systemd restarted the service by itself (NRestarts
# above N0) and it runs again under a new main PID. One read of systemd's
# state: separate reads race the restart (a loaded machine once saw "active"
# from before the kill and a PID from after it).
restarted_after() {
    local s
    s=$(systemctl show -p ActiveState -p SubState -p MainPID -p NRestarts mydex-connector)
    grep -qx 'ActiveState=active' <<<"$s" && grep -qx 'SubState=running' <<<"$s" &&
        ! grep -qx -e 'MainPID=0' -e "MainPID=$1" <<<"$s" &&
        [ "$(sed -n 's/^NRestarts=//p' <<<"$s")" -gt "$2" ]
}
invitees_csv() { # invitees_csv FIRST LAST > file
    echo "email,name,external_ref"
    for i in $(seq "$1" "$2"); do printf 'member%04d@example.com,Member %d,MTR-%04d\n' "$i" "$i" "$i"; done
}

# ---------------------------------------------------------------- install
log "apt-get update"
if ! apt-get update -qq > "$WORK/apt-update.log" 2>&1; then
    fail install "apt-get update failed: $(tail -n 3 "$WORK/apt-update.log")"
    finish
fi
before=$(dpkg-query -W -f '${Package}\n' | sort)
# Only what the package's Depends pull in (no Recommends): a missing Depends shows.
if apt-get install -y --no-install-recommends /root/pkg/mydex-connector.deb > "$WORK/apt-install.log" 2>&1; then
    added=$(comm -13 <(echo "$before") <(dpkg-query -W -f '${Package}\n' | sort) | tr '\n' ' ')
    pass install "apt-get install ./mydex-connector.deb pulled in: $added"
else
    fail install "apt-get install failed: $(tail -n 5 "$WORK/apt-install.log")"
    finish
fi
cp "$WORK/apt-install.log" "$RESULTS/apt-install.log"
depends=$(dpkg-query -W -f '${Depends}' mydex-connector)
if dpkg-query -W -f '${Status}' ca-certificates 2>/dev/null | grep -q 'ok installed'; then
    pass depends "Depends: $depends (ca-certificates installed)"
else
    fail depends "Depends: $depends (no ca-certificates: the daemon cannot make an HTTPS client)"
fi
if command -v kill >/dev/null && [ -x /bin/kill ]; then
    info procps "/bin/kill present (procps installed): the reload check does not show the unit needs no procps"
else
    pass no-procps "/bin/kill absent (no procps), as on a minimal Debian: ExecReload must not need it"
fi

# ---------------------------------------------------------------- secrets, config (docs/book/src/install.md)
client_secret="cs-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
connection_token="ct-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The sandbox gets the same two secrets, in its own root-only files.
install -d -m 700 /etc/mydex-sandbox
install -m 600 /dev/stdin /etc/mydex-sandbox/client_secret <<< "$client_secret"
install -m 600 /dev/stdin /etc/mydex-sandbox/connection_token <<< "$connection_token"
printf 'SANDBOX_PORT=%s\nCALLBACK_PORT=%s\n' "$SANDBOX_PORT" "$CALLBACK_PORT" > /etc/mydex-sandbox/env
# As the book tells an operator:
install -m 600 /dev/stdin /etc/mydex-connector/credentials/client_secret <<< "$client_secret"
install -m 600 /dev/stdin /etc/mydex-connector/credentials/connection_token <<< "$connection_token"
# "sudoedit /etc/mydex-connector/mydex-connector.toml": client_id, the
# sandbox's URLs, the listeners on free ports, a mail outbox as the mail sink.
sed -i \
    -e 's|^client_id = .*|client_id = "sandbox-client"|' \
    -e "s|^environment = \"sandbox\".*|&\napi_url = \"http://127.0.0.1:$SANDBOX_PORT\"\ntoken_url = \"http://127.0.0.1:$SANDBOX_PORT/oauth2/token\"|" \
    -e "/^\[callback\]/,/^\[/ s|^listen = .*|listen = \"127.0.0.1:$CALLBACK_PORT\"|" \
    -e "/^\[admin\]/,/^\[/ s|^listen = .*|listen = \"127.0.0.1:$ADMIN_PORT\"|" \
    -e '/^\[smtp\]/,/^\[/ s|^url = .*|url = "file:///var/lib/mydex-connector/outbox"|' \
    -e '/^\[queue\]/a poll_interval = "500ms"' \
    "$CONF"
# The socket units listen where the config says (docs/book/src/install.md: `systemctl edit
# mydex-connector.socket`; here the drop-ins written directly).
for unit_port in "mydex-connector.socket:$CALLBACK_PORT" "mydex-connector-admin.socket:$ADMIN_PORT"; do
    mkdir -p "/etc/systemd/system/${unit_port%%:*}.d"
    printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "${unit_port##*:}" \
        > "/etc/systemd/system/${unit_port%%:*}.d/port.conf"
done
cp "$CONF" "$RESULTS/mydex-connector.toml"
perms=$(stat -c '%a %U' "$CREDS" "$CREDS"/* | sort -u | tr '\n' ' ')
ls_creds=$(ls "$CREDS" | tr '\n' ' ')
if mydex-connector check-config --config "$CONF" > "$WORK/check-config.out" 2>&1; then
    pass check-config "exit 0; credentials: $ls_creds(modes: $perms)"
else
    fail check-config "exit $?: $(tail -n 3 "$WORK/check-config.out")"
fi
# The secret values must not be printed by check-config either.
if grep -qF -e "$client_secret" -e "$connection_token" "$WORK/check-config.out"; then
    fail check-config-redacted "check-config printed a secret"
fi

# ---------------------------------------------------------------- the sandbox, as its own unit
cp /mnt/tests/mydex-sandbox.service /etc/systemd/system/
systemctl daemon-reload
systemctl start mydex-sandbox
if wait_for 20 port_open "$SANDBOX_PORT"; then
    pass sandbox-unit "mydex-sandbox.service $(systemctl is-active mydex-sandbox), listening on 127.0.0.1:$SANDBOX_PORT"
else
    fail sandbox-unit "sandbox not listening: $(journalctl -u mydex-sandbox --no-pager | tail -n 5)"
    finish
fi

# ---------------------------------------------------------------- start: READY
t0=$(date +%s.%N)
systemctl enable --now mydex-connector > "$WORK/enable.out" 2>&1
rc=$?
t1=$(date +%s.%N)
st="ActiveState=$(prop ActiveState) SubState=$(prop SubState) StatusText=\"$(prop StatusText)\""
if [ $rc = 0 ] && [ "$(prop ActiveState)" = active ] && [ "$(prop SubState)" = running ] && [ -n "$(prop StatusText)" ]; then
    pass ready "systemctl enable --now returned after READY in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s: $st"
else
    fail ready "rc=$rc $st; $(journalctl -u mydex-connector --no-pager | tail -n 8)"
    finish
fi
# The sockets: enabled with the service (Also=), started with it
# (Requires=), and the daemon serves them (its journal says so for both).
sock_state=""
for u in mydex-connector.socket mydex-connector-admin.socket; do
    sock_state="$sock_state $u=$(systemctl is-active "$u")/$(systemctl is-enabled "$u")"
done
taken=$(journalctl -u mydex-connector --no-pager -o cat | grep -c 'listening on the socket passed by the service manager')
if [ "$sock_state" = " mydex-connector.socket=active/enabled mydex-connector-admin.socket=active/enabled" ] && [ "$taken" -ge 2 ] &&
    ! journalctl -u mydex-connector --no-pager -o cat | grep -q 'the socket unit wins'; then
    pass sockets "$sock_state; the daemon took both sockets from systemd ($taken journal lines), no address disagreement"
else
    fail sockets "$sock_state; 'listening on the socket passed' lines: $taken; $(journalctl -u mydex-connector --no-pager -o cat | grep -i socket | tail -n 3)"
fi
if mydex-connector status --config "$CONF" > "$WORK/status.out" 2>&1; then
    pass status-cli "mydex-connector status: $(head -n 3 "$WORK/status.out" | tr '\n' ' ')"
else
    fail status-cli "exit $?: $(tail -n 3 "$WORK/status.out")"
fi

# ---------------------------------------------------------------- invitations flow, journeys connect
invitees_csv 1 5 > "$WORK/first.csv"
mydex-connector enqueue --config "$CONF" "$WORK/first.csv" > "$WORK/enqueue1.out" 2>&1
if wait_for 60 eval '[ "$(mails)" -ge 5 ]'; then
    ok=0
    for i in 1 2 3 4 5; do
        journey "$(printf 'member%04d@example.com' "$i")" "sdmember$i" && ok=$((ok + 1))
    done
    if wait_for 30 members_are 5; then
        pass invitations "5 invitees enqueued → $(mails) mails in the outbox → $ok journeys → 5 members connected (status: members total 5)"
    else
        fail invitations "$ok journeys done but members total = $(members_total)"
    fi
else
    fail invitations "only $(mails) of 5 mails after 60 s: $(cat "$WORK/enqueue1.out") $(journalctl -u mydex-connector --no-pager | tail -n 5)"
fi

# ---------------------------------------------------------------- journal: structured fields, no secret
journalctl -u mydex-connector -o json --no-pager > "$WORK/journal.json"
connected_lines=$(grep -c '"MESSAGE":"member connected"' "$WORK/journal.json")
line=$(grep '"MESSAGE":"member connected"' "$WORK/journal.json" | grep 'MTR-0003' | head -n1)
f_inv=$(echo "$line" | grep -o '"[A-Z0-9_]*INVITATION":"[0-9]*"' | head -n1)
f_camp=$(echo "$line" | grep -o '"[A-Z0-9_]*CAMPAIGN":"meters-2026"' | head -n1)
f_ref=$(echo "$line" | grep -o '"[A-Z0-9_]*EXTERNAL_REF":"MTR-0003"' | head -n1)
f_conn=$(echo "$line" | grep -o '"[A-Z0-9_]*CONNECTION_ID":"[^"]*"' | head -n1)
if [ "$connected_lines" -ge 5 ] && [ -n "$f_inv" ] && [ -n "$f_camp" ] && [ -n "$f_ref" ]; then
    pass journal-fields "$connected_lines 'member connected' entries; e.g. $f_inv $f_camp $f_ref $f_conn"
else
    fail journal-fields "member connected entries: $connected_lines; fields: '$f_inv' '$f_camp' '$f_ref'"
fi
one=$(journalctl -u mydex-connector F_EXTERNAL_REF=MTR-0003 --no-pager -o cat | tr '\n' ';')
if [ -n "$one" ]; then
    pass journal-filter "journalctl -u mydex-connector F_EXTERNAL_REF=MTR-0003: $one"
else
    fail journal-filter "journalctl -u mydex-connector F_EXTERNAL_REF=MTR-0003 finds nothing"
fi
cp "$WORK/journal.json" "$RESULTS/journal-mydex-connector.json"
secrets=("$client_secret" "$connection_token")
for f in store_key admin_token; do secrets+=("$(cat "$CREDS/$f")"); done
http GET "$SANDBOX_PORT" /_sandbox/state
member_keys=$(grep -o '"key":"[A-Za-z0-9]*"' "$WORK/body" | cut -d'"' -f4 | sort -u)
for k in $member_keys; do secrets+=("$k"); done
leaks=0
for s in "${secrets[@]}"; do
    [ -n "$s" ] && grep -qF -- "$s" "$WORK/journal.json" && leaks=$((leaks + 1))
done
if [ "$leaks" = 0 ] && [ -n "$member_keys" ]; then
    pass journal-no-secret "none of ${#secrets[@]} secrets (client secret, Connection Token, store key, admin token, $(echo "$member_keys" | wc -l) member keys) in $(wc -l < "$WORK/journal.json") journal entries"
else
    fail journal-no-secret "$leaks of ${#secrets[@]} secrets found in the journal (member keys seen at the sandbox: $(echo "$member_keys" | wc -l))"
fi
stray=$(grep -o '"MESSAGE":"[^"]*"' "$WORK/journal.json" | grep -E 'Uninited|Job creator created' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
if [ -n "$stray" ]; then
    fail journal-quiet "lines from a library in the operator's journal: $stray"
else
    pass journal-quiet "no 'Uninited' / 'Job creator created' lines from the cron library"
fi

# ---------------------------------------------------------------- reload applies a changed campaign rate
# The live settings: status's "campaigns" and "campaign_progress" both show
# the new rate. 2/s: the kill -9 below then lands while the 20 mails are
# going out.
live_rate() { status_json | grep -o '"campaigns":{"meters-2026":{.*' | grep -o '"rate":"[^"]*"' | head -n1; }
progress_rate() { status_json | grep -o '"campaign_progress":{"meters-2026":{.*' | grep -o '"rate":"[^"]*"' | head -n1; }
pid=$(mainpid)
rate0=$(live_rate)
sed -i 's|^rate = "60/min"|rate = "2/s"|' "$CONF"
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl reload mydex-connector > "$WORK/reload.out" 2>&1
rc=$?
sleep 1
rate=$(live_rate)
logged=$(journalctl -u mydex-connector --since "$since" --no-pager -o cat | grep -i 'reload\|rate' | tr '\n' ' ')
if [ $rc = 0 ] && [ "$(mainpid)" = "$pid" ] && [ "$rate" = '"rate":"2/1s"' ]; then
    pass reload "rate 60/min → 2/s in the file, systemctl reload rc=0, same MainPID $pid, status campaigns: $rate0 → $rate; journal: $logged"
    if [ "$(progress_rate)" = "$rate" ]; then
        pass reload-progress "status campaign_progress says $(progress_rate) too"
    else
        fail reload-progress "status campaign_progress still says $(progress_rate)"
    fi
else
    fail reload "rc=$rc pid $pid→$(mainpid) status $rate; $(cat "$WORK/reload.out") $(journalctl -u mydex-connector --since "$since" --no-pager | tail -n 4)"
fi

# ---------------------------------------------------------------- watchdog: a stalled daemon is restarted
mkdir -p /etc/systemd/system/mydex-connector.service.d
printf '[Service]\nWatchdogSec=4s\n' > /etc/systemd/system/mydex-connector.service.d/watchdog-test.conf
systemctl daemon-reload
systemctl restart mydex-connector
pid=$(mainpid)
n0=$(prop NRestarts)
since=$(date '+%Y-%m-%d %H:%M:%S')
t0=$(date +%s)
kill -STOP "$pid"
if wait_for 90 restarted_after "$pid" "$n0"; then
    wd=$(journalctl -u mydex-connector --since "$since" --no-pager -o cat | grep -m1 'Watchdog timeout')
    n1=$(prop NRestarts)
    if [ -n "$wd" ] && [ "$n1" -gt "$n0" ]; then
        pass watchdog "kill -STOP $pid (WatchdogSec=4s drop-in) → \"$wd\" → restarted as $(mainpid) after $(($(date +%s) - t0))s, NRestarts $n0→$n1"
    else
        fail watchdog "restarted but journal says '${wd}' NRestarts $n0→$n1"
    fi
else
    fail watchdog "not restarted within 90 s: $(prop ActiveState)/$(prop SubState) MainPID $(mainpid)"
    kill -CONT "$pid" 2>/dev/null
fi

# ---------------------------------------------------------------- kill -9 during a campaign: restarted, nothing lost
invitees_csv 101 120 > "$WORK/second.csv"
# As root with a strict umask (as many admins have): the file must still
# become the daemon's (DynamicUser) and be read.
(umask 077; mydex-connector enqueue --config "$CONF" "$WORK/second.csv") > "$WORK/enqueue2.out" 2>&1
wait_for 30 eval '[ "$(mails)" -ge 8 ]'
pid=$(mainpid)
n0=$(prop NRestarts)
sent_before=$(mails)
kill -9 "$pid"
if wait_for 30 restarted_after "$pid" "$n0"; then
    restarted="restarted as $(mainpid), NRestarts $n0→$(prop NRestarts)"
    if wait_for 90 eval '[ "$(recipients)" -ge 25 ]'; then
        ok=0
        for i in $(seq 101 120); do
            journey "$(printf 'member%04d@example.com' "$i")" "sdmember$i" && ok=$((ok + 1))
        done
        recipients=$(recipients)
        dups=$(($(mails) - recipients))
        if wait_for 60 members_are 25 && [ "$recipients" = 25 ]; then
            failed=$(mydex-connector invitations list --config "$CONF" --state failed --json 2>/dev/null | grep -o '"id"' | wc -l)
            pass kill-9 "20 more enqueued as root under umask 077; kill -9 $pid after $sent_before of 25 mails → $restarted → all 25 recipients mailed ($dups duplicate mails), $ok/20 journeys, 25 members, $failed failed invitations"
        else
            fail kill-9 "$restarted but members $(members_total), recipients $recipients, mails $(mails)"
        fi
    else
        fail kill-9 "$restarted but only $(mails) of 25 mails"
    fi
else
    fail kill-9 "not restarted within 30 s: $(prop ActiveState)/$(prop SubState)"
fi

# ---------------------------------------------------------------- restarts under load: no callback refused
# Callbacks at 100 a second, each on its own connection (bash's /dev/tcp,
# one background sender each), while the service is restarted 3 times with
# `systemctl restart` and then upgraded in place (the package installed
# again: its postinst's upgrade path). The sockets are systemd's: callbacks
# arriving between two processes wait in their backlog. Every one must be
# answered 200 and stored exactly once; none refused, reset or timed out.
LOAD=$WORK/load
mkdir -p "$LOAD"
mkfifo "$WORK/pace.fifo"
exec 7<>"$WORK/pace.fifo" # never written: `read -t` on it sleeps without a fork
auth=$(printf '%s' "$connection_token" | sha512sum | cut -d' ' -f1)
load_key="restart-test-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# stored_count KEY: the callbacks' KEY in status (its first one after "callbacks":{).
stored_count() { status_json | sed -n 's/.*"callbacks":{//p' | grep -o "\"$1\":[0-9]*" | head -n1 | cut -d: -f2; }
# send_callback N: one callback, linking token of its own (kept as unmatched);
# writes "CODE ANSWER-STATUS" (or refused / closed / timeout) to $LOAD/N.
send_callback() {
    local n=$1 body req code="" rest="" outcome=refused sent=${EPOCHREALTIME}
    printf -v body '{"uid":%d,"mydexid":"restart%d","key":"%s-%d","connection_id":"%d-45678","fields":{"a":1},"linking_token":"lt_restart_%d"}' \
        $((800000 + n)) "$n" "$load_key" "$n" $((800000 + n)) "$n"
    printf -v req 'POST /mydex/callback HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nAuthentication: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
        "$CALLBACK_PORT" "$auth" "${#body}" "$body"
    if exec 5<>"/dev/tcp/127.0.0.1/$CALLBACK_PORT"; then
        outcome=closed
        if printf '%s' "$req" >&5; then
            IFS=' ' read -r -t 120 _ code _ <&5
            case $? in
                0) IFS= read -r -d '' -t 120 rest <&5
                   [[ $rest =~ \"status\":\"([a-z_]+)\" ]]
                   outcome="$code ${BASH_REMATCH[1]:-none}" ;;
                1) outcome=closed ;;
                *) outcome=timeout ;;
            esac
        fi
        exec 5<&-
    fi
    echo "$outcome" > "$LOAD/$n"
    # Any other answer, with when it was sent and ended (seconds since the
    # load began), to set beside the restarts' times if the check fails.
    [ "$outcome" = "200 unmatched" ] ||
        echo "#$n $outcome: sent $(awk -v a="$t0" -v b="${sent/./}" -v c="${EPOCHREALTIME/./}" 'BEGIN { printf "%.3f s, ended %.3f s", (b - a) / 1e6, (c - a) / 1e6 }')" >> "$LOAD/odd"
} 2>/dev/null
# The restarts: 3 × systemctl restart, then the package again; each line
# to $LOAD/restarts, then $LOAD/done.
restarter() {
    local i pid t0 rc
    sleep 4
    for i in 1 2 3; do
        pid=$(mainpid)
        t0=$(date +%s.%N)
        systemctl restart mydex-connector
        rc=$?
        echo "systemctl restart $i at $(awk -v a="$load_t0" -v b="$t0" 'BEGIN { printf "%.3f", b - a / 1e6 }') s: rc=$rc, MainPID $pid → $(mainpid), $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s" >> "$LOAD/restarts"
        sleep 5
    done
    pid=$(mainpid)
    t0=$(date +%s.%N)
    apt-get install -y --reinstall --no-install-recommends /root/pkg/mydex-connector.deb > "$WORK/upgrade.out" 2>&1
    rc=$?
    echo "package installed again (upgrade path) at $(awk -v a="$load_t0" -v b="$t0" 'BEGIN { printf "%.3f", b - a / 1e6 }') s: rc=$rc, MainPID $pid → $(mainpid), $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s" >> "$LOAD/restarts"
    sleep 4
    : > "$LOAD/done"
}
stored0=$(stored_count stored)
unmatched0=$(stored_count unmatched)
starts0=$(journalctl -u mydex-connector --no-pager -o cat | grep -c 'listening on the socket passed by the service manager')
t0=${EPOCHREALTIME/./}
load_t0=$t0
restarter &
restarter_pid=$!
n=0
while [ ! -e "$LOAD/done" ] && [ $n -lt 20000 ]; do
    n=$((n + 1))
    send_callback "$n" &
    next=$((t0 + n * 10000)) now=${EPOCHREALTIME/./}
    if [ $next -gt "$now" ]; then
        printf -v pause '0.%06d' $((next - now > 999999 ? 999999 : next - now))
        read -r -t "$pause" -u 7 _
    fi
done
t1=${EPOCHREALTIME/./}
wait "$restarter_pid"
wait
rate=$(awk -v n="$n" -v us=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (us / 1e6) }')
outcomes=$(cat "$LOAD"/[0-9]* | sort | uniq -c | awk '{ printf "%s× %s %s; ", $1, $2, $3 }')
answered=$(cat "$LOAD"/[0-9]* | grep -c '^200 unmatched$')
missing=$((n - $(ls "$LOAD" | grep -c '^[0-9]*$')))
stored_delta=$(($(stored_count stored) - stored0))
unmatched_delta=$(($(stored_count unmatched) - unmatched0))
starts=$(($(journalctl -u mydex-connector --no-pager -o cat | grep -c 'listening on the socket passed by the service manager') - starts0))
restarts=$(tr '\n' ';' < "$LOAD/restarts")
cp "$LOAD/restarts" "$RESULTS/restarts-under-load.txt"
if [ "$answered" = "$n" ] && [ "$missing" = 0 ] && [ "$stored_delta" = "$n" ] && [ "$unmatched_delta" = "$n" ] &&
    [ "$(grep -c 'rc=0' "$LOAD/restarts")" = 4 ] && [ "$starts" -ge 8 ]; then
    pass restarts-under-load "$n callbacks at $rate/s over $(((t1 - t0) / 1000000)) s: $outcomes 0 refused or reset; stored $stored_delta (each once: unmatched +$unmatched_delta); $restarts sockets taken $starts times (2 a start)"
else
    fail restarts-under-load "$n callbacks at $rate/s: $outcomes missing $missing; stored +$stored_delta, unmatched +$unmatched_delta; $restarts sockets taken $starts times; not 200: $(head -n 20 "$LOAD/odd" 2>/dev/null | tr '\n' ';'); $(tail -n 3 "$WORK/upgrade.out" 2>/dev/null | tr '\n' ' '); the daemon said: $(journalctl -u mydex-connector --no-pager -o cat -p warning --since "@$((load_t0 / 1000000))" | tail -n 8 | tr '\n' ';')"
fi
exec 7<&-

# ---------------------------------------------------------------- broken config: exit 78, no restart loop
cp "$CONF" "$WORK/good.toml"
sed -i '1i bogus_key = "a typo an operator made"' "$CONF"
mydex-connector check-config --config "$CONF" > "$WORK/check-bad.out" 2>&1
cc=$?
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl restart mydex-connector > /dev/null 2>&1
rc=$?
n0=$(prop NRestarts) # a manual restart resets it
sleep 13 # more than twice RestartSec=5s: a restart loop would show
why=$(journalctl -u mydex-connector --since "$since" --no-pager -o cat | grep -m1 bogus_key)
starts=$(journalctl -u mydex-connector --since "$since" --no-pager -o cat | grep -c '^Starting\|Starting mydex-connector')
st="ActiveState=$(prop ActiveState) Result=$(prop Result) ExecMainStatus=$(prop ExecMainStatus) NRestarts $n0→$(prop NRestarts)"
if [ $rc != 0 ] && [ "$(prop ExecMainStatus)" = 78 ] && [ "$(prop ActiveState)" = failed ] && [ "$(prop NRestarts)" = "$n0" ] && [ "$starts" -le 1 ]; then
    pass broken-config "check-config exit $cc; systemctl restart rc=$rc; after 13 s: $st, $starts start(s); journal: $why"
else
    fail broken-config "systemctl restart rc=$rc; after 13 s: $st, starts $starts; journal: $why"
fi
cp "$WORK/good.toml" "$CONF"
systemctl restart mydex-connector
if [ "$(prop ActiveState)" = active ] && members_are 25; then
    pass fixed-config "config restored → systemctl restart → active, 25 members"
else
    fail fixed-config "$(prop ActiveState), members $(members_total)"
fi

# ---------------------------------------------------------------- no CA certificates
# An environment the daemon cannot work in: the CA certificates out of the
# way (the package's Depends on ca-certificates keeps it from happening).
# The daemon must say why and exit 78, which the unit does not restart (no
# restart loop), and `status` must not panic.
mv /etc/ssl/certs /etc/ssl/certs.away
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl restart mydex-connector > /dev/null 2>&1
rc=$?
sleep 13
err=$(journalctl -u mydex-connector --since "$since" --no-pager -o cat | grep -m1 -i 'certificate')
st="ActiveState=$(prop ActiveState) ExecMainStatus=$(prop ExecMainStatus) NRestarts=$(prop NRestarts)"
mydex-connector status --config "$CONF" > "$WORK/status-nocerts.out" 2>&1
src=$?
panic=$(grep -m1 'panicked' "$WORK/status-nocerts.out")
if [ "$(prop ExecMainStatus)" = 78 ] && [ "$(prop NRestarts)" = 0 ] && [ -z "$panic" ]; then
    pass no-ca-certs "exit 78, no restart loop ($st); status exit $src; journal: $err"
else
    fail no-ca-certs "without /etc/ssl/certs: systemctl restart rc=$rc, after 13 s $st; journal: $err; \`mydex-connector status\` exit $src: ${panic:-no panic}"
fi
mv /etc/ssl/certs.away /etc/ssl/certs
systemctl reset-failed mydex-connector 2>/dev/null
systemctl restart mydex-connector
[ "$(prop ActiveState)" = active ] || fail no-ca-certs-restored "not active again with the certificates back: $(prop ActiveState)"

# ---------------------------------------------------------------- stop: clean exit inside the stop timeout
pid=$(mainpid)
timeout_stop=$(prop TimeoutStopUSec)
t0=$(date +%s.%N)
systemctl stop mydex-connector
rc=$?
t1=$(date +%s.%N)
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
st="ActiveState=$(prop ActiveState) Result=$(prop Result) ExecMainCode=$(prop ExecMainCode) ExecMainStatus=$(prop ExecMainStatus)"
if [ $rc = 0 ] && [ "$(prop Result)" = success ] && [ "$(prop ExecMainStatus)" = 0 ] && awk -v e="$elapsed" 'BEGIN { exit !(e < 45) }'; then
    pass stop "systemctl stop (pid $pid) took ${elapsed}s (TimeoutStopSec=$timeout_stop): $st"
else
    fail stop "rc=$rc took ${elapsed}s: $st"
fi

# ---------------------------------------------------------------- systemd-analyze security, inside
systemctl start mydex-connector
systemd-analyze security --no-pager mydex-connector > "$RESULTS/security.txt" 2>&1
exposure=$(tail -n 1 "$RESULTS/security.txt")
if echo "$exposure" | grep -Eq 'exposure level .*: [0-9.]+ (OK|SAFE)'; then
    pass security "systemd-analyze security mydex-connector: $exposure (docs/book/src/install.md claims 1.2 OK offline)"
else
    fail security "$exposure"
fi

# ---------------------------------------------------------------- the man pages and shell completions the package installs
page=/usr/share/man/man1/mydex-connector.1.gz
completions="/usr/share/bash-completion/completions/mydex-connector /usr/share/zsh/vendor-completions/_mydex-connector /usr/share/fish/vendor_completions.d/mydex-connector.fish"
pages=$(dpkg -L mydex-connector | grep -c '^/usr/share/man/man1/mydex-connector.*\.1\.gz$')
missing=""
for f in $page $completions; do [ -s "$f" ] || missing="$missing $f"; done
if [ -z "$missing" ] && gzip -dc "$page" | grep -q '^\.SH SYNOPSIS' && [ "$pages" -ge 15 ]; then
    pass man-files "the package installed $pages man pages (gzip, roff with SYNOPSIS) and the bash, zsh and fish completions"
else
    fail man-files "missing:${missing:- nothing}; $pages pages; $(gzip -dc "$page" 2>&1 | head -n 3 | tr '\n' ' ')"
fi
# man-db is not in a minimal Debian: installed here, as an operator would,
# to read the packaged page with man itself.
if ! command -v man >/dev/null; then
    apt-get install -y --no-install-recommends man-db > "$WORK/man-db.log" 2>&1 ||
        info man-db "apt-get install man-db failed: $(tail -n 2 "$WORK/man-db.log" | tr '\n' ' ')"
fi
if command -v man >/dev/null; then
    found=$(man -w mydex-connector 2>&1)
    MANWIDTH=120 man --warnings -l "$page" > "$WORK/man.txt" 2> "$WORK/man.err"
    rc=$?
    MANWIDTH=120 man mydex-connector-enqueue > "$WORK/man-enqueue.txt" 2>&1
    if [ $rc = 0 ] && [ "$found" = "$page" ] && [ ! -s "$WORK/man.err" ] &&
        grep -qx 'NAME' "$WORK/man.txt" && grep -qx 'SYNOPSIS' "$WORK/man.txt" &&
        grep -q 'mydex-connector-enqueue(1)' "$WORK/man.txt" && grep -q -- '--campaign' "$WORK/man-enqueue.txt"; then
        pass man "man -w mydex-connector: $found; man -l renders it without a warning ($(wc -l < "$WORK/man.txt") lines, NAME, SYNOPSIS, the commands); man mydex-connector-enqueue shows --campaign"
    else
        fail man "rc=$rc, man -w: $found, warnings: $(head -c 300 "$WORK/man.err"), page: $(head -n 5 "$WORK/man.txt" | tr '\n' ' ')"
    fi
else
    fail man "no man to read the page with (see $RESULTS/man-db.log)"
    cp "$WORK/man-db.log" "$RESULTS/man-db.log" 2>/dev/null
fi
# Bash completion as bash runs it on a TAB after `mydex-connector invitations `.
offered=$(bash -c '
    source /usr/share/bash-completion/completions/mydex-connector
    fn=$(complete -p mydex-connector | sed -E "s/.* -F ([^ ]+) .*/\1/")
    COMP_WORDS=(mydex-connector invitations ""); COMP_CWORD=2
    COMP_LINE="mydex-connector invitations "; COMP_POINT=${#COMP_LINE}
    "$fn" mydex-connector "" invitations
    echo "${COMPREPLY[*]}"' 2>&1)
top=$(bash -c '
    source /usr/share/bash-completion/completions/mydex-connector
    fn=$(complete -p mydex-connector | sed -E "s/.* -F ([^ ]+) .*/\1/")
    COMP_WORDS=(mydex-connector ""); COMP_CWORD=1; COMP_LINE="mydex-connector "; COMP_POINT=${#COMP_LINE}
    "$fn" mydex-connector "" mydex-connector
    echo "${COMPREPLY[*]}"' 2>&1)
if grep -qw list <<<"$offered" && grep -qw retry <<<"$offered" && grep -qw enqueue <<<"$top" && grep -qw check-config <<<"$top"; then
    pass bash-completion "mydex-connector <TAB>: $top; mydex-connector invitations <TAB>: $offered"
else
    fail bash-completion "mydex-connector <TAB>: $top; invitations <TAB>: $offered"
fi

# ---------------------------------------------------------------- remove keeps the members; purge removes what docs/book/src/install.md says
dpkg --remove mydex-connector > "$WORK/remove.out" 2>&1
rc=$?
kept=""
for p in "$CREDS/store_key" "$CREDS/client_secret" "$STATE/db" /etc/mydex-connector/mydex-connector.toml; do
    [ -e "$p" ] && kept="$kept $p"
done
sockets_down=yes
for u in mydex-connector.socket mydex-connector-admin.socket; do
    [ "$(systemctl is-active "$u")" = active ] && sockets_down=no
done
port_open "$CALLBACK_PORT" && sockets_down=no
port_open "$ADMIN_PORT" && sockets_down=no
if [ $rc = 0 ] && [ ! -e /usr/bin/mydex-connector ] && [ "$(systemctl is-active mydex-connector)" != active ] && [ $sockets_down = yes ] && [ "$kept" = " $CREDS/store_key $CREDS/client_secret $STATE/db /etc/mydex-connector/mydex-connector.toml" ]; then
    pass remove "dpkg --remove: stopped, sockets stopped and both ports closed, binary gone, kept:$kept"
else
    fail remove "rc=$rc, $(systemctl is-active mydex-connector), sockets down: $sockets_down, kept:$kept"
fi
apt-get install -y --no-install-recommends /root/pkg/mydex-connector.deb > "$WORK/reinstall.out" 2>&1
systemctl start mydex-connector
if [ "$(prop ActiveState)" = active ] && members_are 25; then
    pass reinstall "reinstalled and started: the 25 members are still there"
else
    fail reinstall "$(prop ActiveState), members $(members_total)"
fi
dpkg --purge mydex-connector > "$WORK/purge.out" 2>&1
rc=$?
left=""
for p in /usr/bin/mydex-connector /etc/mydex-connector /var/lib/private/mydex-connector /var/lib/mydex-connector /lib/systemd/system/mydex-connector.service /etc/systemd/system/multi-user.target.wants/mydex-connector.service \
    /lib/systemd/system/mydex-connector.socket /lib/systemd/system/mydex-connector-admin.socket \
    /etc/systemd/system/sockets.target.wants/mydex-connector.socket /etc/systemd/system/sockets.target.wants/mydex-connector-admin.socket \
    $page $completions; do
    [ -e "$p" ] || [ -L "$p" ] && left="$left $p"
done
dropin=/etc/systemd/system/mydex-connector.service.d/watchdog-test.conf
if [ $rc = 0 ] && [ -z "$left" ] && [ -e "$dropin" ]; then
    pass purge "dpkg --purge: no /etc/mydex-connector (credentials too), no $STATE, no /var/lib/mydex-connector, no unit nor socket unit; the operator's own drop-in $dropin kept"
else
    fail purge "rc=$rc, left:${left:- nothing}; drop-in kept: $([ -e "$dropin" ] && echo yes || echo no); $(tail -n 3 "$WORK/purge.out")"
fi

finish
