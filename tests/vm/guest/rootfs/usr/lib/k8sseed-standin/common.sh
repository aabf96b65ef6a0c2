# shellcheck shell=bash
# Shared by the k8sseed test stand-ins for kubeadm, kubelet, kubectl, cri-dockerd and calicoctl.
# TEST IMAGE ONLY: these are not the real tools. Every call is appended to
#   /var/log/k8sseed-standin.log    human-readable: "=== <time> <tool> <argv...>" then any config
#   /var/log/k8sseed-standin.jsonl  one JSON object a call: {"time","tool","argv","files":{path:content}}
STANDIN_LOG=/var/log/k8sseed-standin.log
STANDIN_JSONL=/var/log/k8sseed-standin.jsonl

standin_k8s_version() {
  local v=1.25.6
  [ -s /etc/k8sseed-standin/version ] && v=$(tr -d ' \n\r' </etc/k8sseed-standin/version)
  echo "${v#v}"
}

standin_cri_version() {
  local v=0.3.16
  [ -s /etc/k8sseed-standin/cri-dockerd-version ] && v=$(tr -d ' \n\r' </etc/k8sseed-standin/cri-dockerd-version)
  echo "${v#v}"
}

standin_calico_version() {
  local v=3.25.2
  [ -s /etc/k8sseed-standin/calicoctl-version ] && v=$(tr -d ' \n\r' </etc/k8sseed-standin/calicoctl-version)
  echo "${v#v}"
}

# standin_log TOOL ARGS... : log argv and the content of files named by --config/-f/--filename
standin_log() {
  local tool="$1"; shift
  local now files=() stdin_tmp="" a prev="" i
  now=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
  for a in "$@"; do
    case "$prev" in
      --config|-f|--filename) files+=("$a") ;;
    esac
    case "$a" in
      --config=*|--filename=*) files+=("${a#*=}") ;;
    esac
    prev="$a"
  done
  {
    printf '=== %s %s' "$now" "$tool"
    printf ' %q' "$@"
    printf '\n'
    for i in "${!files[@]}"; do
      a="${files[$i]}"
      if [ "$a" = - ]; then
        stdin_tmp=$(mktemp); cat >"$stdin_tmp"; files[$i]="$stdin_tmp"
        printf -- '--- file - (stdin)\n'; cat "$stdin_tmp"
      elif [ -f "$a" ]; then
        printf -- '--- file %s\n' "$a"; cat "$a"
      elif [ -d "$a" ]; then
        printf -- '--- dir %s\n' "$a"; find "$a" -type f -exec sh -c 'echo "--- file $1"; cat "$1"' _ {} \;
      else
        printf -- '--- missing %s\n' "$a"
      fi
      printf -- '\n--- end\n'
    done
  } >>"$STANDIN_LOG" 2>/dev/null || true
  if command -v jq >/dev/null 2>&1; then
    local fj='{}' content name
    for i in "${!files[@]}"; do
      a="${files[$i]}"; name="$a"; [ -n "$stdin_tmp" ] && [ "$a" = "$stdin_tmp" ] && name="-"
      [ -f "$a" ] || continue
      content=$(cat "$a")
      fj=$(jq -c --arg k "$name" --arg v "$content" '. + {($k): $v}' <<<"$fj")
    done
    # argv goes in as --arg values (never parsed as jq options, unlike --args)
    local jargs=() n=0
    for a in "$@"; do jargs+=(--arg "a$n" "$a"); n=$((n + 1)); done
    jq -cn --arg time "$now" --arg tool "$tool" --argjson files "$fj" --argjson n "$n" "${jargs[@]}" \
      '{time: $time, tool: $tool, argv: [range($n) as $i | $ARGS.named["a\($i)"]], files: $files}' \
      >>"$STANDIN_JSONL" 2>/dev/null || true
  fi
  [ -n "$stdin_tmp" ] && rm -f "$stdin_tmp"
  return 0
}

# run "forever" when started by systemd (so `systemctl is-active` says active), else return
standin_daemon() {
  if [ -n "${INVOCATION_ID:-}" ]; then
    if [ -n "${NOTIFY_SOCKET:-}" ]; then
      # Type=notify units (cri-docker.service): become a main process that reports READY=1, like the real daemon.
      exec python3 -c 'import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect("\0" + addr[1:] if addr.startswith("@") else addr)
s.send(b"READY=1")
while True:
    time.sleep(3600)'
    fi
    exec sleep infinity
  fi
}
