#!/usr/bin/env bash
# Who can reach what the lab opens. Source after common.sh and docker.sh; do not run it.
#
# LAB_NETWORK_ACCESS=local (the default): the Swarm listens on 127.0.0.1 and iptables rules keep
# the stack's published ports, Swarm's VXLAN port and any Swarm port still on a wildcard address
# from every client but this machine and its containers. LAB_NETWORK_ACCESS=open: none of that,
# for a multi-node Swarm (its nodes must reach each other, and users the edge node's ports).
# README.md's "Ports" section lists every port.

LAB_NETWORK_ACCESS="${LAB_NETWORK_ACCESS:-local}"
# Our own chains, jumped to from Docker's DOCKER-USER (forwarded traffic: published ports, which
# Docker DNATs to containers) and from INPUT (the engine's own sockets). Nothing else is touched.
LAB_FORWARD_CHAIN=PENGUIN-LAB
LAB_INPUT_CHAIN=PENGUIN-LAB-INPUT
# Swarm's control (2377/tcp), gossip (7946/tcp+udp) and overlay data (VXLAN, 4789/udp) ports.
SWARM_PORTS_TCP=(2377 7946)
SWARM_PORTS_UDP=(7946 4789)

# check_network_access: a clear error for a bad LAB_NETWORK_ACCESS, before anything is done.
check_network_access() {
  case "$LAB_NETWORK_ACCESS" in
    local|open) ;;
    *) die "LAB_NETWORK_ACCESS must be 'local' (this machine only) or 'open', not '$LAB_NETWORK_ACCESS'" ;;
  esac
}

network_is_local() { [ "$LAB_NETWORK_ACCESS" = local ]; }

# lab_iptables ARGS...: iptables as root (sudo -n when not root: never a password prompt).
lab_iptables() {
  if is_root; then iptables -w "$@"; else sudo -n iptables -w "$@"; fi
}

# require_iptables: a clear error when the rules cannot be made, before anything is opened.
require_iptables() {
  command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] \
    || die "LAB_NETWORK_ACCESS=local needs iptables (Debian's iptables package), or set LAB_NETWORK_ACCESS=open"
  lab_iptables -n -L INPUT >/dev/null 2>&1 \
    || die "LAB_NETWORK_ACCESS=local needs iptables as root (run as root, or with sudo), or set LAB_NETWORK_ACCESS=open"
}

# ensure_jump PARENT CHAIN: CHAIN exists and PARENT's first rule jumps to it.
ensure_jump() {
  lab_iptables -n -L "$2" >/dev/null 2>&1 || lab_iptables -N "$2"
  lab_iptables -C "$1" -j "$2" 2>/dev/null || lab_iptables -I "$1" 1 -j "$2"
}

# ensure_rule CHAIN RULE...: appends RULE unless CHAIN has it.
ensure_rule() {
  local chain="$1"
  shift
  lab_iptables -C "$chain" "$@" 2>/dev/null || lab_iptables -A "$chain" "$@"
}

# delete_commented CHAIN COMMENT: removes CHAIN's rules carrying exactly COMMENT.
delete_commented() {
  local chain="$1" comment="$2" number
  lab_iptables -n -L "$chain" >/dev/null 2>&1 || return 0
  # Highest rule number first, so the numbers of the rest do not shift.
  for number in $(lab_iptables -n -L "$chain" --line-numbers \
      | awk -v want="/* $comment */" 'index($0, want) { print $1 }' | sort -rn); do
    lab_iptables -D "$chain" "$number"
  done
}

# close_swarm_ports: in local mode, Swarm's ports answer no interface but loopback, whatever
# address the engine binds them to (the VXLAN socket is always on every address).
close_swarm_ports() {
  network_is_local || return 0
  require_iptables
  ensure_jump INPUT "$LAB_INPUT_CHAIN"
  local port
  for port in "${SWARM_PORTS_TCP[@]}"; do
    ensure_rule "$LAB_INPUT_CHAIN" ! -i lo -p tcp --dport "$port" -m comment --comment "penguin-lab swarm" -j DROP
  done
  for port in "${SWARM_PORTS_UDP[@]}"; do
    ensure_rule "$LAB_INPUT_CHAIN" ! -i lo -p udp --dport "$port" -m comment --comment "penguin-lab swarm" -j DROP
  done
}

# publish_ports STACK PORT...: in local mode, the stack's published ports answer only this machine
# (its own connections never pass FORWARD) and its containers (Docker's bridges); in open mode the
# stack's rules are removed.
publish_ports() {
  local stack="$1" port
  shift
  if ! network_is_local; then
    if lab_iptables -n -L INPUT >/dev/null 2>&1; then
      delete_commented "$LAB_FORWARD_CHAIN" "penguin-lab $stack"
    fi
    log "LAB_NETWORK_ACCESS=open: ports $* of stack $stack answer every network this machine is on"
    return 0
  fi
  require_iptables
  lab_iptables -n -L DOCKER-USER >/dev/null 2>&1 \
    || die "no DOCKER-USER chain: the engine does not manage iptables, so the lab cannot keep its ports local"
  ensure_jump DOCKER-USER "$LAB_FORWARD_CHAIN"
  ensure_rule "$LAB_FORWARD_CHAIN" -i docker_gwbridge -m comment --comment "penguin-lab containers" -j RETURN
  ensure_rule "$LAB_FORWARD_CHAIN" -i docker0 -m comment --comment "penguin-lab containers" -j RETURN
  for port in "$@"; do
    # --ctorigdstport: the port the client asked for, before Docker's DNAT to the container. A
    # reset, as from a closed port: the client learns at once, instead of waiting for a timeout.
    ensure_rule "$LAB_FORWARD_CHAIN" -p tcp -m conntrack --ctstate DNAT --ctorigdstport "$port" \
      -m comment --comment "penguin-lab $stack" -j REJECT --reject-with tcp-reset
  done
}

# unpublish_ports STACK: removes the stack's rules (the stack is gone).
unpublish_ports() {
  lab_iptables -n -L INPUT >/dev/null 2>&1 || return 0
  delete_commented "$LAB_FORWARD_CHAIN" "penguin-lab $1"
}

# swarm_listens_on_wildcard: whether the engine's Swarm control port is bound to every address.
swarm_listens_on_wildcard() {
  ss -Hltn 'sport = :2377' 2>/dev/null | awk '{ print $4 }' | grep -qE '^(\*|0\.0\.0\.0|\[::\]):2377$'
}
