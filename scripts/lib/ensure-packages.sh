# shellcheck shell=bash
# Installs what the project's scripts need, from Debian's packages only, and only when it is
# missing. Source this file; every function is safe to call more than once.
#
#   ensure_postgres_binaries   PostgreSQL server binaries (initdb, pg_ctl) and the postgres user
#   ensure_haproxy             /usr/sbin/haproxy (deploy/haproxy/haproxy.cfg, failover tests)
#   ensure_iproute2            ip (the emulated datacenters' network namespaces, as root)
#   ensure_chromium            /usr/bin/chromium (the GUI's browser suite, tests/gui)
#   ensure_node                node and npm (the browser suite's runner and its packages)
#   ensure_python_tools DIR    kubernetes-validate and schemathesis (PyPI, pinned) in a virtual
#                              environment in DIR, from Debian's python3-venv
#
# Needs root to install; as another user it only checks and explains what is missing.

# runuser, useradd and apt-get live in sbin, which a minimal PATH (CI, `env -i`) may lack.
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) PATH=$PATH:/usr/sbin:/sbin ;;
esac

# `apt-get update` runs at most once per shell, and only when something must be installed.
_HISCALE_APT_UPDATED=${_HISCALE_APT_UPDATED:-}

_ensure_log() { printf '[ensure] %s\n' "$*" >&2; }

# _ensure_apt_update : `apt-get update`, once per shell.
_ensure_apt_update() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z $_HISCALE_APT_UPDATED ]]; then
        _ensure_log "apt-get update"
        apt-get update -qq </dev/null
        _HISCALE_APT_UPDATED=1
    fi
}

# _ensure_apt_install PACKAGE... : installs the packages non-interactively (root only).
_ensure_apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        _ensure_log "missing Debian package(s): $*; as root: apt-get install -y $*"
        return 1
    fi
    _ensure_apt_update
    _ensure_log "apt-get install -y $*"
    apt-get install -y -qq "$@" </dev/null
}

# pg_bin_dir : prints the newest PostgreSQL server bin directory, or fails when there is none.
# HISCALE_PG_BIN (a directory holding initdb and pg_ctl) overrides the search.
pg_bin_dir() {
    if [[ -n ${HISCALE_PG_BIN:-} ]]; then
        [[ -x $HISCALE_PG_BIN/initdb ]] || { _ensure_log "HISCALE_PG_BIN=$HISCALE_PG_BIN has no initdb"; return 1; }
        printf '%s\n' "$HISCALE_PG_BIN"
        return 0
    fi
    local initdb
    initdb=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true)
    [[ -n $initdb ]] || return 1
    printf '%s\n' "${initdb%/initdb}"
}

ensure_postgres_binaries() {
    if ! pg_bin_dir >/dev/null; then
        # Tell postgresql-common not to create (and start) the default cluster on port 5432
        # when it installs: our throwaway clusters never use it. Only done on this fresh
        # install path; `pg_createcluster 15 main` still works by hand.
        if [[ $(id -u) -eq 0 && ! -e /etc/postgresql-common/createcluster.d/hiscale.conf ]]; then
            mkdir -p /etc/postgresql-common/createcluster.d
            printf '%s\n' '# written by HiScale scripts/lib/ensure-packages.sh' \
                'create_main_cluster = off' >/etc/postgresql-common/createcluster.d/hiscale.conf
        fi
        # Debian 12's server is postgresql-15 (it provides initdb, pg_ctl, postgres and, through
        # postgresql-client-15, psql); elsewhere take the release's default major version.
        local package=postgresql-15
        if [[ $(id -u) -eq 0 ]]; then
            _ensure_apt_update
            apt-cache show postgresql-15 >/dev/null 2>&1 || package=postgresql
        fi
        _ensure_apt_install "$package" || return 1
        pg_bin_dir >/dev/null || { _ensure_log "$package installed but no initdb found"; return 1; }
    fi
    if ! id -u postgres >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]]; then
            _ensure_log "creating system user postgres"
            local group=(--user-group)
            getent group postgres >/dev/null && group=(--gid postgres)
            useradd --system "${group[@]}" --home-dir /var/lib/postgresql --no-create-home \
                --shell /usr/sbin/nologin postgres
        fi
        # Not root: the cluster runs as the current user, no postgres user is needed.
    fi
}

ensure_haproxy() {
    if ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]]; then
        _ensure_apt_install haproxy || return 1
    fi
}

ensure_iproute2() {
    if ! command -v ip >/dev/null 2>&1; then
        _ensure_apt_install iproute2 || return 1
    fi
}

# The rollback tests restore a SQLite backup into a live file the way an operator does, with
# the sqlite3 shell's `.backup` and `.restore` (SQLite's backup API).
ensure_sqlite3() {
    if ! command -v sqlite3 >/dev/null 2>&1; then
        _ensure_apt_install sqlite3 || return 1
    fi
}

ensure_chromium() {
    if [[ ! -x /usr/bin/chromium ]]; then
        _ensure_apt_install chromium || return 1
    fi
}

ensure_node() {
    local missing=()
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if [[ ${#missing[@]} -gt 0 ]]; then
        _ensure_apt_install "${missing[@]}" || return 1
    fi
}

# The test command's tools from PyPI, each pinned: kubernetes-validate (it carries the API
# schemas of every Kubernetes release, so validating needs no network) and schemathesis.
PYTHON_TOOLS=("kubernetes-validate==1.37.0" "schemathesis==4.32.5")

# ensure_python_tools DIR : a virtual environment in DIR (from Debian's python3-venv) holding
# PYTHON_TOOLS; installs them only when DIR does not hold exactly these releases yet.
ensure_python_tools() {
    local venv=$1
    local wanted="${PYTHON_TOOLS[*]}"
    if [[ -f $venv/.tools && $(<"$venv/.tools") == "$wanted" ]]; then
        return 0
    fi
    if ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        _ensure_apt_install python3-venv || return 1
    fi
    _ensure_log "pip install ${PYTHON_TOOLS[*]} into $venv"
    rm -rf -- "$venv"
    /usr/bin/python3 -m venv "$venv" || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_TOOLS[@]}" || return 1
    printf '%s' "$wanted" >"$venv/.tools"
}
