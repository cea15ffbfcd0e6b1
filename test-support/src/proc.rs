//! Process plumbing shared by the services: finding binaries, running as another user,
//! signals, the reaper, scratch directories and log tails.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::settings;

/// Finds an executable by name on `PATH` (plus the sbin directories, which a non-root
/// `PATH` often lacks), or panics naming the Debian package that provides it.
pub(crate) fn require(name: &str, package: &str) -> PathBuf {
    find_executable(name).unwrap_or_else(|| {
        panic!(
            "test-support: `{name}` not found on PATH or in /usr/sbin, /sbin. Install the \
             Debian package `{package}` (apt-get install {package}), or run scripts/test, which \
             installs everything the tests need."
        )
    })
}

pub(crate) fn find_executable(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub(crate) fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The effective user id of this process, read as the owner of a file it creates (no libc,
/// no `unsafe`).
pub(crate) fn euid() -> u32 {
    static EUID: OnceLock<u32> = OnceLock::new();
    *EUID.get_or_init(|| {
        tempfile::tempfile()
            .and_then(|f| f.metadata())
            .map(|m| m.uid())
            .expect("test-support: cannot create a temporary file to learn the effective uid")
    })
}

/// uid and gid a child runs as (`None`: as this process).
pub(crate) type RunAs = Option<(u32, u32)>;

/// uid and gid of a system user, from `getent passwd` (so NSS is honoured), else
/// `/etc/passwd`.
pub(crate) fn system_user(name: &str) -> Option<(u32, u32)> {
    let from_getent = Command::new("getent")
        .args(["passwd", name])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let text = from_getent.or_else(|| fs::read_to_string("/etc/passwd").ok())?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Sets the child's user when dropping privileges. std clears root's supplementary groups
/// when it switches uid, and sets real and effective ids alike (postgres checks both).
pub(crate) fn run_as(cmd: &mut Command, who: RunAs) -> &mut Command {
    if let Some((uid, gid)) = who {
        cmd.gid(gid).uid(uid);
    }
    cmd
}

/// Hands a directory (not recursively) to `who`.
pub(crate) fn chown_dir(dir: &Path, who: RunAs) {
    if let Some((uid, gid)) = who {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("test-support: chown {} to {uid}: {e}", dir.display()));
    }
}

/// Sends a signal by name (`TERM`, `QUIT`, `INT`, `KILL`) with the shell's `kill`
/// builtin: std can only send SIGKILL and this crate has no libc.
pub(crate) fn signal(pid: u32, sig: &str) -> bool {
    Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\" 2>/dev/null", "sh", sig])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Waits for a child to exit, polling, at most `timeout`.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The one server process a throwaway service runs at a time (none while stopped).
#[derive(Debug, Default)]
pub(crate) struct ChildSlot(std::sync::Mutex<Option<Child>>);

impl ChildSlot {
    /// The slot, usable even after a panic elsewhere poisoned the lock.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the process is still running; forgets it once it has exited.
    pub(crate) fn is_running(&self) -> bool {
        let mut slot = self.lock();
        match slot.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *slot = None;
                false
            }
            None => false,
        }
    }

    /// Stops the process with `sig` (see [`stop_child`]); returns whether one was running.
    pub(crate) fn stop(&self, sig: &str, grace: Duration) -> bool {
        match self.lock().take() {
            Some(mut child) => {
                stop_child(&mut child, sig, grace);
                true
            }
            None => false,
        }
    }
}

/// Asks a child to exit with `sig`, waits `grace`, then SIGKILLs it. Always reaps it.
pub(crate) fn stop_child(child: &mut Child, sig: &str, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), sig);
    if wait_timeout(child, grace).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Quotes a string for `sh` (single quotes, `'` as `'\''`).
pub(crate) fn sh_quote(s: impl AsRef<OsStr>) -> String {
    let s = s.as_ref().to_string_lossy();
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The last `lines` lines of a log file (lossy UTF-8), for error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all.get(start..).unwrap_or_default().join("\n")
}

/// The length of a log file now, to read only what a new start appends.
pub(crate) fn log_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What a log file got after `offset` (lossy UTF-8).
pub(crate) fn log_since(path: &Path, offset: u64) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let _ = f.seek(SeekFrom::Start(offset));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether a server log, after `offset`, says its listening port was taken.
pub(crate) fn says_addr_in_use(log: &Path, offset: u64) -> bool {
    log_since(log, offset)
        .to_ascii_lowercase()
        .contains("address already in use")
}

/// Prints a service log to stderr when `TEST_SUPPORT_LOG` asks for it.
pub(crate) fn print_log_if_asked(what: &str, log: &Path) {
    if settings::keep_logs() {
        let text = fs::read(log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read: {e})"));
        eprintln!(
            "----- test-support: {what} log {} -----\n{text}\n----- end of {what} log -----",
            log.display()
        );
    }
}

/// A temporary directory removed on drop, unless `TEST_SUPPORT_LOG` asks to keep it.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn new(prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .unwrap_or_else(|e| {
                panic!(
                    "test-support: cannot create a temp dir under {}: {e}",
                    std::env::temp_dir().display()
                )
            });
        let path = dir.path().to_path_buf();
        Self {
            dir: Some(dir),
            path,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if settings::keep_logs() {
                let kept = dir.keep();
                eprintln!("test-support: kept {}", kept.display());
            }
            // else: TempDir's own drop removes it, ignoring errors.
        }
    }
}

/// A `sh` child that blocks reading a pipe whose only writer is this process, then runs a
/// cleanup script. The pipe closes when the reaper is finished or when this process dies
/// in any way (std opens pipes close-on-exec, so no other child inherits the writer), so a
/// killed test run does not leave servers behind.
#[derive(Debug)]
pub(crate) struct Reaper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Reaper {
    /// `cleanup` is a `sh` script; it runs with `who`'s ids in `cwd`.
    pub(crate) fn spawn(cleanup: &str, who: RunAs, cwd: &Path) -> Self {
        let script = format!("cat >/dev/null; {cleanup}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run_as(&mut cmd, who);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("test-support: cannot spawn sh for the reaper: {e}"));
        let stdin = child.stdin.take();
        Self { child, stdin }
    }

    /// Runs the cleanup now and waits for it (bounded: a stuck cleanup is killed).
    pub(crate) fn finish(mut self) {
        drop(self.stdin.take());
        if wait_timeout(&mut self.child, Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `rm -rf dir` for reaper scripts, or nothing when the logs are to be kept.
pub(crate) fn reaper_rm(dir: &Path) -> String {
    if settings::keep_logs() {
        String::new()
    } else {
        format!("rm -rf {}", sh_quote(dir))
    }
}

/// Polls `ready` every 50 ms until it returns `Some`, or `timeout` passes.
pub(crate) fn poll<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        let out = Command::new("sh")
            .args(["-c", &format!("printf %s {}", sh_quote("a'b c$d"))])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"a'b c$d");
    }

    #[test]
    fn sh_and_getent_style_lookup() {
        assert_eq!(system_user("root"), Some((0, 0)));
        assert_eq!(system_user("no-such-user-here"), None);
        assert!(find_executable("sh").is_some());
        assert!(find_executable("definitely-not-a-binary-xyz").is_none());
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        fs::write(&p, "1\n2\n3\n4\n").unwrap();
        assert_eq!(log_tail(&p, 2), "3\n4");
        assert_eq!(log_tail(&p, 10), "1\n2\n3\n4");
    }
}
