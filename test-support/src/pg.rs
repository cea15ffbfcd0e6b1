//! A throwaway PostgreSQL cluster.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::proc::{
    self, ChildSlot, Reaper, RunAs, ScratchDir, chown_dir, find_executable, is_executable,
    log_tail, run_as, says_addr_in_use, sh_quote, stop_child,
};
use crate::settings;

const HOST: &str = "127.0.0.1";
const SUPERUSER: &str = "postgres";
const PACKAGE: &str = "postgresql";

/// A throwaway PostgreSQL server: its own `initdb`'d cluster in a temp dir, listening on a
/// free port on 127.0.0.1 (and a Unix socket inside the temp dir), superuser `postgres`
/// with `trust` authentication, `fsync=off`, UTC. Stopped and removed on drop.
///
/// Per-test databases are cheap: prepare a template once per process with
/// [`template_database`](Self::template_database) (idempotent), then clone it per test with
/// [`fresh_database`](Self::fresh_database).
///
/// ```no_run
/// use test_support::PgServer;
/// let pg = PgServer::shared();
/// let tmpl = pg.template_database("app_tmpl", "CREATE TABLE t (id int PRIMARY KEY);");
/// let db = pg.fresh_database(Some(&tmpl));
/// let url = pg.connection_string(&db); // postgresql://postgres@127.0.0.1:PORT/test_...
/// assert_eq!(pg.psql(&db, "SELECT count(*) FROM t"), "0");
/// # let _ = url;
/// ```
///
/// All methods take `&self` (the server is shared between test threads) and panic with the
/// server log's tail when something fails.
#[derive(Debug)]
pub struct PgServer {
    bin: PgBin,
    port: AtomicU16,
    run_as: RunAs,
    data: PathBuf,
    log: PathBuf,
    postmaster: ChildSlot,
    reaper: Mutex<Option<Reaper>>,
    /// Templates made by this process: name → the SQL that made it (`None`: a closure).
    templates: Mutex<HashMap<String, Option<String>>>,
    /// Last: removed after `Drop::drop` has stopped the server.
    root: ScratchDir,
}

#[derive(Debug, Clone)]
struct PgBin {
    dir: PathBuf,
    initdb: PathBuf,
    postgres: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
    pg_isready: PathBuf,
}

enum Startup {
    Ready,
    AddrInUse,
    Exited(String),
    TimedOut,
}

impl PgServer {
    /// Creates a cluster and starts it. Takes a second or two (initdb).
    ///
    /// Panics when the binaries are missing (naming the Debian package), when running as
    /// root without a `postgres` system user, or when the server does not come up within
    /// `TEST_SUPPORT_TIMEOUT_SECS` (with the server log's tail).
    pub fn new() -> Self {
        let bin = PgBin::find();
        let run_as = if proc::euid() == 0 {
            Some(proc::system_user(SUPERUSER).unwrap_or_else(|| {
                panic!(
                    "test-support: running as root, so initdb and postgres must run as the \
                     `postgres` system user, which does not exist. The Debian package \
                     `{PACKAGE}` creates it (apt-get install {PACKAGE})."
                )
            }))
        } else {
            None
        };
        let root = ScratchDir::new("test-pg-");
        chown_dir(root.path(), run_as);
        let data = root.path().join("data");
        let log = root.path().join("postgres.log");
        initdb(&bin, &data, root.path(), run_as);

        // Stops the server and removes the directory if this process dies without
        // dropping us (killed, or the `shared()` static that is never dropped).
        let cleanup = format!(
            "{} -D {} stop -m immediate -s >/dev/null 2>&1; {}",
            sh_quote(&bin.pg_ctl),
            sh_quote(&data),
            proc::reaper_rm(root.path())
        );
        let reaper = Reaper::spawn(&cleanup, run_as, root.path());

        let server = Self {
            bin,
            port: AtomicU16::new(0),
            run_as,
            data,
            log,
            postmaster: ChildSlot::default(),
            reaper: Mutex::new(Some(reaper)),
            templates: Mutex::new(HashMap::new()),
            root,
        };
        let mut slot = server.lock_postmaster();
        server.launch(&mut slot, true);
        drop(slot);
        server
    }

    /// One server for the whole test binary, started on first use. Never stop it (use
    /// your own [`PgServer::new`] for outage tests): other tests share it. It is stopped
    /// and removed by its reaper when the test process exits.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::new)
    }

    /// The TCP port (stays the same across [`stop_immediate`](Self::stop_immediate) and
    /// [`start`](Self::start)).
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The superuser name, `postgres` (no password: trust authentication).
    pub fn user(&self) -> &'static str {
        SUPERUSER
    }

    /// `postgresql://postgres@127.0.0.1:PORT/db`, for any libpq-style client.
    pub fn connection_string(&self, db: &str) -> String {
        format!("postgresql://{SUPERUSER}@{HOST}:{}/{db}", self.port())
    }

    /// The directory holding the Unix socket (`.s.PGSQL.PORT`).
    pub fn socket_dir(&self) -> &Path {
        self.root.path()
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server log (appended to across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Runs SQL (any number of statements) with `psql` against `db` as the superuser and
    /// returns its unaligned, tuples-only output (`|` between columns, one row a line, no
    /// trailing newline). Stops at the first error.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(&self.bin.psql);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
        ])
        .arg(self.port().to_string())
        .args(["-U", SUPERUSER, "-d", db, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "test-support");
        for var in [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGDATABASE",
            "PGUSER",
            "PGPASSWORD",
            "PGPASSFILE",
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGOPTIONS",
            "PGSSLMODE",
            "PGTARGETSESSIONATTRS",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.psql.display()))?;
        // Feed stdin from a thread: a large script with large output would otherwise
        // deadlock on full pipes.
        let mut stdin = child.stdin.take().expect("psql stdin is piped");
        let sql = sql.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(sql.as_bytes());
        });
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for psql: {e}"))?;
        let _ = writer.join();
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(text.trim_end_matches('\n').to_owned())
        } else {
            Err(format!(
                "psql on {db} (port {}) failed ({}): {}",
                self.port(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    /// [`try_psql`](Self::try_psql), panicking on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("test-support: {e}"))
    }

    /// `CREATE DATABASE name` (an empty copy of `template1`).
    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {};", quote_ident(name)),
        );
    }

    /// `DROP DATABASE IF EXISTS name WITH (FORCE)` (disconnects its sessions).
    pub fn drop_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE);",
                quote_ident(name)
            ),
        );
    }

    /// A new database with a unique name (`test_<pid>_<n>`), cloned from `template` (made
    /// with [`template_database`](Self::template_database)) or else from `template1`.
    /// Returns its name; see [`connection_string`](Self::connection_string).
    pub fn fresh_database(&self, template: Option<&str>) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let sql = match template {
            Some(t) => format!(
                "CREATE DATABASE {} TEMPLATE {};",
                quote_ident(&name),
                quote_ident(t)
            ),
            None => format!("CREATE DATABASE {};", quote_ident(&name)),
        };
        self.psql("postgres", &sql);
        name
    }

    /// Makes template database `name` by running `setup_sql` in it (e.g. all migrations),
    /// once per server: later calls with the same name and SQL return at once (calling it
    /// with other SQL for the same name panics). Returns `name`.
    ///
    /// The template is marked `IS_TEMPLATE` and `ALLOW_CONNECTIONS false`, so nothing can
    /// change it by accident or hold a session that would block cloning.
    pub fn template_database(&self, name: &str, setup_sql: &str) -> String {
        self.make_template(name, Some(setup_sql), |server, db| {
            server.psql(db, setup_sql);
        })
    }

    /// Like [`template_database`](Self::template_database), with Rust setup code (e.g. the
    /// crate's own migration runner), called once per server with `(self, name)`; connect
    /// with [`connection_string`](Self::connection_string)`(name)`. Close every connection
    /// before returning: an open session blocks cloning.
    pub fn template_database_with(
        &self,
        name: &str,
        setup: impl FnOnce(&PgServer, &str),
    ) -> String {
        self.make_template(name, None, setup)
    }

    fn make_template(
        &self,
        name: &str,
        sql: Option<&str>,
        setup: impl FnOnce(&PgServer, &str),
    ) -> String {
        // Held during setup, so concurrent tests wait for the first one to finish it.
        let mut made = self.templates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prev) = made.get(name) {
            if let (Some(prev), Some(sql)) = (prev, sql) {
                assert!(
                    prev == sql,
                    "test-support: template database {name} was already made from other SQL"
                );
            }
            return name.to_owned();
        }
        // A leftover of a setup that panicked earlier in this process.
        self.drop_database(name);
        self.create_database(name);
        setup(self, name);
        self.psql(
            "postgres",
            &format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false;",
                quote_ident(name)
            ),
        );
        made.insert(name.to_owned(), sql.map(str::to_owned));
        name.to_owned()
    }

    /// Serves TLS (besides plain connections) with `certs`' server certificate and key:
    /// copies them into the data directory (owned by the server's user, key mode 0600),
    /// sets `ssl = on` and reloads. Authentication stays `trust`.
    pub fn enable_tls(&self, certs: &crate::TestCerts) {
        use std::os::unix::fs::PermissionsExt;
        for (from, to) in [(&certs.cert, "server.crt"), (&certs.key, "server.key")] {
            let dest = self.data.join(to);
            fs::copy(from, &dest).unwrap_or_else(|e| {
                panic!(
                    "test-support: copy {} to {}: {e}",
                    from.display(),
                    dest.display()
                )
            });
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("test-support: chmod {}: {e}", dest.display()));
            chown_dir(&dest, self.run_as);
        }
        self.psql(
            "postgres",
            "ALTER SYSTEM SET ssl_cert_file = 'server.crt'; \
             ALTER SYSTEM SET ssl_key_file = 'server.key'; \
             ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();",
        );
        // The reload is asynchronous: wait until new sessions see it.
        let deadline = Instant::now() + settings::start_timeout();
        while self.psql("postgres", "SHOW ssl") != "on" {
            assert!(
                Instant::now() < deadline,
                "test-support: ssl did not come on. Server log tail:\n{}",
                log_tail(&self.log, 30)
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Whether the postmaster this object started is still running.
    pub fn is_running(&self) -> bool {
        self.postmaster.is_running()
    }

    /// Crash-stops the server like `pg_ctl stop -m immediate` (SIGQUIT to the postmaster):
    /// no checkpoint, sessions cut, the next [`start`](Self::start) runs crash recovery.
    /// Committed data survives. No-op when stopped.
    pub fn stop_immediate(&self) {
        self.stop_with("QUIT");
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`, SIGINT). No-op when stopped.
    pub fn stop(&self) {
        self.stop_with("INT");
    }

    fn stop_with(&self, sig: &str) {
        self.postmaster.stop(sig, Duration::from_secs(30));
    }

    /// Starts the server again on the same data directory and port after a stop; no-op if
    /// it is running. Waits until it accepts connections (after crash recovery).
    pub fn start(&self) {
        let mut slot = self.lock_postmaster();
        if let Some(child) = slot.as_mut() {
            if let Ok(None) = child.try_wait() {
                return;
            }
            *slot = None;
        }
        self.launch(&mut slot, false);
    }

    fn lock_postmaster(&self) -> MutexGuard<'_, Option<Child>> {
        self.postmaster.lock()
    }

    /// Starts the postmaster and waits for it. On the first start a taken port is replaced
    /// by another free one; on a restart the port must stay, so it is retried for a while.
    fn launch(&self, slot: &mut Option<Child>, first_start: bool) {
        let timeout = settings::start_timeout();
        let deadline = Instant::now() + timeout;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = if first_start {
                let p = free_port();
                self.port.store(p, Ordering::SeqCst);
                p
            } else {
                self.port()
            };
            let log_start = proc::log_len(&self.log);
            let mut child = self.spawn_postmaster(port);
            match self.wait_ready(&mut child, port, log_start, deadline) {
                Startup::Ready => {
                    *slot = Some(child);
                    return;
                }
                Startup::AddrInUse if Instant::now() < deadline && attempts < 50 => {
                    if !first_start {
                        sleep(Duration::from_millis(200));
                    }
                }
                Startup::AddrInUse => panic!(
                    "test-support: PostgreSQL could not bind {HOST}:{port} after {attempts} \
                     attempts. Server log tail ({}):\n{}",
                    self.log.display(),
                    log_tail(&self.log, 30)
                ),
                Startup::Exited(status) => panic!(
                    "test-support: PostgreSQL ({}) exited during startup ({status}). Server \
                     log tail ({}):\n{}",
                    self.bin.postgres.display(),
                    self.log.display(),
                    log_tail(&self.log, 30)
                ),
                Startup::TimedOut => {
                    stop_child(&mut child, "QUIT", Duration::from_secs(10));
                    panic!(
                        "test-support: PostgreSQL did not accept connections on {HOST}:{port} \
                         within {timeout:?} (TEST_SUPPORT_TIMEOUT_SECS). Server log tail \
                         ({}):\n{}",
                        self.log.display(),
                        log_tail(&self.log, 30)
                    )
                }
            }
        }
    }

    fn spawn_postmaster(&self, port: u16) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("test-support: open {}: {e}", self.log.display()));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("test-support: dup log fd: {e}"));
        let mut cmd = Command::new(&self.bin.postgres);
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &port.to_string(), "-h", HOST, "-k"])
            .arg(self.root.path())
            .args([
                // Throwaway data: surviving an OS crash buys nothing and costs seconds.
                // synchronous_commit stays on: with fsync off a WAL flush is only a
                // write(2), and outage tests need commits to survive stop_immediate.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=200",
                "-c",
                "TimeZone=UTC",
                "-c",
                "log_timezone=UTC",
            ])
            .current_dir(self.root.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        run_as(&mut cmd, self.run_as);
        cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "test-support: cannot start {}: {e}",
                self.bin.postgres.display()
            )
        })
    }

    fn wait_ready(
        &self,
        child: &mut Child,
        port: u16,
        log_start: u64,
        deadline: Instant,
    ) -> Startup {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return if says_addr_in_use(&self.log, log_start) {
                    Startup::AddrInUse
                } else {
                    Startup::Exited(status.to_string())
                };
            }
            // 0: accepting; 1: rejecting (starting up, recovering); 2: no response.
            let ready = Command::new(&self.bin.pg_isready)
                .args(["-q", "-h", HOST, "-p", &port.to_string(), "-U", SUPERUSER])
                .args(["-d", "postgres", "-t", "2"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Startup::Ready;
            }
            if Instant::now() >= deadline {
                return Startup::TimedOut;
            }
            sleep(Duration::from_millis(50));
        }
    }
}

impl Default for PgServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.lock_postmaster().take() {
            stop_child(&mut child, "QUIT", Duration::from_secs(30));
        }
        if let Some(reaper) = self.reaper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            reaper.finish();
        }
        proc::print_log_if_asked("PostgreSQL", &self.log);
    }
}

impl PgBin {
    fn find() -> Self {
        let dir = bindir();
        let tool = |name: &str| {
            let p = dir.join(name);
            if is_executable(&p) {
                p
            } else {
                panic!(
                    "test-support: {} missing. Install the Debian package `{PACKAGE}` \
                     (apt-get install {PACKAGE}).",
                    p.display()
                )
            }
        };
        Self {
            initdb: tool("initdb"),
            postgres: tool("postgres"),
            pg_ctl: tool("pg_ctl"),
            psql: tool("psql"),
            pg_isready: tool("pg_isready"),
            dir,
        }
    }
}

/// `TEST_SUPPORT_PG_BINDIR`, else `pg_config --bindir` if it holds a server, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian installs servers there, off `PATH`).
fn bindir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_server =
            |d: &Path| is_executable(&d.join("initdb")) && is_executable(&d.join("postgres"));
        if let Some(dir) = settings::pg_bindir() {
            assert!(
                has_server(&dir),
                "test-support: TEST_SUPPORT_PG_BINDIR={} has no initdb/postgres",
                dir.display()
            );
            return dir;
        }
        let from_pg_config = find_executable("pg_config")
            .and_then(|pg_config| Command::new(pg_config).arg("--bindir").output().ok())
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|d| has_server(d));
        if let Some(dir) = from_pg_config {
            return dir;
        }
        newest_debian_bindir(Path::new("/usr/lib/postgresql"), has_server).unwrap_or_else(|| {
            panic!(
                "test-support: no PostgreSQL server binaries (initdb, postgres) found via \
                 pg_config --bindir or in /usr/lib/postgresql/*/bin. Install the Debian package \
                 `{PACKAGE}` (apt-get install {PACKAGE}), or set TEST_SUPPORT_PG_BINDIR."
            )
        })
    })
    .clone()
}

/// The `<root>/<version>/bin` with the highest version (`9.6` < `15` < `17`).
fn newest_debian_bindir(root: &Path, usable: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let version = |name: &str| -> Option<Vec<u32>> {
        name.split('.').map(|part| part.parse().ok()).collect()
    };
    fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let v = version(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            usable(&bin).then_some((v, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

fn initdb(bin: &PgBin, data: &Path, cwd: &Path, who: RunAs) {
    let mut cmd = Command::new(&bin.initdb);
    cmd.arg("-D")
        .arg(data)
        .args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .stdin(Stdio::null());
    run_as(&mut cmd, who);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("test-support: cannot run {}: {e}", bin.initdb.display()));
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    let _ = fs::write(cwd.join("initdb.log"), &text);
    if !out.status.success() {
        let hint = if who.is_some() {
            format!(
                " (running as the postgres user: it must be able to reach {}; check TMPDIR)",
                cwd.display()
            )
        } else {
            String::new()
        };
        panic!(
            "test-support: initdb ({}) failed ({}){hint}:\n{}",
            bin.dir.display(),
            out.status,
            String::from_utf8_lossy(&text)
        );
    }
}

/// `"name"` with embedded quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_wins_numerically() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "17", "notaversion"] {
            fs::create_dir_all(root.path().join(v).join("bin")).unwrap();
        }
        let got = newest_debian_bindir(root.path(), |_| true).unwrap();
        assert_eq!(got, root.path().join("17").join("bin"));
        let got = newest_debian_bindir(root.path(), |p| !p.starts_with(root.path().join("17")));
        assert_eq!(got.unwrap(), root.path().join("15").join("bin"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
