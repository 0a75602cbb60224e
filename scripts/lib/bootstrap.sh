# shellcheck shell=bash
# Installs what vtwist needs on a fresh Debian 12 machine (as root) and keeps a venv in
# .venv. Sourced by scripts/test and scripts/up; every step is skipped when already done.

APT_PACKAGES=(
  mariadb-server mariadb-client   # the real MySQL server the tablets front, and its CLI
  zookeeper default-jre-headless  # the topo-server
  sysbench                        # a real client used by tests and benchmarks
  libmariadb-dev pkg-config gcc   # to build mysqlclient
  python3-dev python3-venv
)
# Only for ./scripts/test: PHP's mysqlnd, the Go driver and JDBC (the JDK runs the test's
# Java source file), MySQL clients written apart from the others.
TEST_APT_PACKAGES=(
  php-cli php-mysql golang-go golang-github-go-sql-driver-mysql-dev
  openjdk-17-jdk-headless libmariadb-java mydumper
)

# ensure_system_packages [EXTRA_PACKAGE...]: APT_PACKAGES and the extra ones.
ensure_system_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "vtwist: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    return 1
  fi
  echo "vtwist: installing ${missing[*]}" >&2
  # Packages must not start their own system services (MariaDB on :3306, ZooKeeper on
  # :2181): vtwist's launcher runs private instances on free ports.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

VENV=${VTWIST_VENV:-.venv}

# ensure_node_client: Node.js's mysql2 driver for the tests (in $VENV/node), and Node.js
# itself from Debian when the machine has none.
NODE_MYSQL2=mysql2@3
# Not fatal: without it that one test is skipped, and says why.
ensure_node_client() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_system_packages nodejs npm || return 0
  fi
  [ -d "$VENV/node/node_modules/mysql2" ] && return 0
  mkdir -p "$VENV/node"
  npm install -q --no-audit --no-fund --prefix "$VENV/node" "$NODE_MYSQL2" >/dev/null ||
    echo "vtwist: could not install $NODE_MYSQL2 from npm; test_node_mysql2 will be skipped" >&2
}

ensure_venv() {
  local py=${PYTHON:-python3.11}
  command -v "$py" >/dev/null || py=python3
  if [ ! -x "$VENV/bin/python" ]; then
    "$py" -m venv "$VENV"
  fi
  # Re-install only when the project metadata changed since the last install.
  local stamp="$VENV/.vtwist-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}
