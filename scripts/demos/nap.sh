#!/usr/bin/env bash
# The Napster-like directory, headless: the course's battery with two peers
# (ana and bo) against nap-server, the date-time from nap-time, every
# operation logged by nap-log; each command shows the expected and the
# obtained message. Then every operation again with the server down.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
demo_init nap

start time nap-time --listen 127.0.0.1:0 || exit 1
start log nap-log --listen 127.0.0.1:0 || exit 1
start server nap-server --listen 127.0.0.1:0 --storage "$RUN/state" --log-rpc "$ADDR_log" || exit 1
TIME_URL="http://$ADDR_time/"
say "nap-server on $ADDR_server, nap-time on $ADDR_time, nap-log on $ADDR_log"

mkdir -p "$RUN/ana" "$RUN/bo"
printf 'notes of ana\n' >"$RUN/ana/notes.txt"
head -c 3000000 /dev/urandom >"$RUN/ana/song.bin"

# peer_start NAME FD: an interactive nap-peer reading commands from a FIFO
# held open on descriptor FD, writing to $RUN/NAME.out.
peer_start() {
    mkfifo "$RUN/$1.in"
    nap-peer -s 127.0.0.1 -p "$PORT_server" --share "$RUN/$1" --time-url "$TIME_URL" \
        --listen-ip 127.0.0.1 <"$RUN/$1.in" >"$RUN/$1.out" 2>"$RUN/$1.err" &
    PIDS+=($!)
    eval "exec $2>\"$RUN/$1.in\""
    : >>"$RUN/$1.out"
}
peer_start ana 7
peer_start bo 8

# check WHO COMMAND EXPECTED...: sends COMMAND to peer WHO, waits for as
# many lines as expected, prints both, and compares (`*` matches anything).
check() {
    local who=$1 command=$2 fd before n obtained expected ok=1 i
    shift 2
    fd=7
    [ "$who" = bo ] && fd=8
    before=$(wc -l <"$RUN/$who.out")
    printf '%s\n' "$command" >&"$fd"
    n=$#
    wait_count "$RUN/$who.out" '' $((before + n)) 10 || true
    say "$who c> $command"
    i=0
    for expected in "$@"; do
        i=$((i + 1))
        obtained=$(sed -n "$((before + i))p" "$RUN/$who.out")
        say "    expected: $expected"
        say "    obtained: $obtained"
        # shellcheck disable=SC2053
        [[ $obtained == $expected ]] || ok=0
    done
    step "$who: $command" [ "$ok" -eq 1 ]
}

note "register, unregister, connect"
check ana "PUBLISH notes.txt my notes" "PUBLISH FAIL, USER DOES NOT EXIST"
check ana "REGISTER ana" "REGISTER OK"
check ana "REGISTER ana" "USERNAME IN USE"
check ana "PUBLISH notes.txt my notes" "PUBLISH FAIL, USER NOT CONNECTED"
check ana "UNREGISTER nobody" "USER DOES NOT EXIST"
check ana "CONNECT nobody" "CONNECT FAIL, USER DOES NOT EXIST"
check ana "CONNECT ana" "CONNECT OK"
check ana "CONNECT ana" "USER ALREADY CONNECTED"

note "publish, delete, list"
check ana "PUBLISH notes.txt my notes" "PUBLISH OK"
check ana "PUBLISH notes.txt my notes" "PUBLISH FAIL, CONTENT ALREADY PUBLISHED"
check ana "PUBLISH song.bin a binary file" "PUBLISH OK"
check ana "DELETE nothing.txt" "DELETE FAIL, CONTENT NOT PUBLISHED"
check bo "REGISTER bo" "REGISTER OK"
check bo "CONNECT bo" "CONNECT OK"
check bo "LIST_USERS" "LIST_USERS OK" "* 127.0.0.1 *" "* 127.0.0.1 *"
check bo "LIST_CONTENT nobody" "LIST_CONTENT FAIL, REMOTE USER DOES NOT EXIST"
check bo "LIST_CONTENT ana" "LIST_CONTENT OK" "notes.txt my notes" "song.bin a binary file"

note "get files from ana"
check bo "GET_FILE ana notes.txt $RUN/bo/notes-of-ana.txt" "GET_FILE OK"
check bo "GET_FILE ana song.bin $RUN/bo/song.bin" "GET_FILE OK"
step "the binary file arrived intact" cmp -s "$RUN/ana/song.bin" "$RUN/bo/song.bin"
check bo "GET_FILE ana missing.txt $RUN/bo/missing.txt" "GET_FILE FAIL / FILE NOT EXIST"
step "a failed GET_FILE leaves no file" [ ! -e "$RUN/bo/missing.txt" ]

note "disconnect"
check bo "DISCONNECT bo" "DISCONNECT OK"
check bo "DISCONNECT bo" "DISCONNECT FAIL / USER NOT CONNECTED"
check ana "DISCONNECT ana" "DISCONNECT OK"
check ana "DISCONNECT ana" "DISCONNECT FAIL / USER NOT CONNECTED"
check ana "UNREGISTER ana" "UNREGISTER OK"
exec 7>&- 8>&-

note "what the server and the operation log printed"
sed 's/^/    /' "$RUN/server.out"
wait_line "$RUN/log.out" '^bo DISCONNECT ' 10 || true
sed 's/^/    /' "$RUN/log.out"
step "nap-log printed ana's PUBLISH with its file and date-time" \
    grep -qE '^ana PUBLISH notes\.txt [0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}$' "$RUN/log.out"
step "nap-time gives the date-time" \
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_time && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && tail -n1 <&3 | grep -qE '^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}$'"
if /usr/bin/python3 -c 'import zeep' 2>/dev/null; then
    step "zeep calls get_current_datetime through nap-time's WSDL" \
        /usr/bin/python3 -c "import zeep; print('    zeep:', zeep.Client(wsdl='$TIME_URL?wsdl').service.get_current_datetime())"
else
    skipped "nap demo: zeep calls nap-time" "zeep not installed for /usr/bin/python3 (scripts/install-deps.sh nap)"
fi

note "every operation with the server down"
kill "$PID_server"
wait "$PID_server" 2>/dev/null
printf '%s\n' "REGISTER x" "UNREGISTER x" "CONNECT x" "PUBLISH a.txt d" "DELETE a.txt" \
    "LIST_USERS" "LIST_CONTENT x" "DISCONNECT x" "GET_FILE x a.txt b.txt" "QUIT" |
    nap-peer -s 127.0.0.1 -p "$PORT_server" --share "$RUN/bo" >"$RUN/down.out" 2>"$RUN/down.err"
i=0
for expected in "REGISTER FAIL" "UNREGISTER FAIL" "CONNECT FAIL" "PUBLISH FAIL" "DELETE FAIL" \
    "LIST_USERS FAIL" "LIST_CONTENT FAIL" "DISCONNECT FAIL" "GET_FILE FAIL"; do
    i=$((i + 1))
    obtained=$(sed -n "${i}p" "$RUN/down.out")
    say "    expected: $expected"
    say "    obtained: $obtained"
    step "server down: ${expected% FAIL}" [ "$obtained" = "$expected" ]
done
summary
