//! Child processes that cannot outlive the suite.
//!
//! Every program the suite starts (services, media server, ffmpeg publishers and
//! recorders) runs in its own process group, so that stopping it also stops whatever it
//! spawned (ffmpeg helpers, shells). Each live group is registered in a process-wide table:
//! `Drop` kills a group when its owner goes away (test failure, panic unwinding), and the
//! Ctrl-C / SIGTERM handler installed by [`install_interrupt_handler`] kills every group
//! still registered and runs the registered cleanup hooks (e.g. `docker compose down`)
//! before the process exits.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// Errors from starting or stopping a child process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started at all.
    #[error("starting {name} ({program}): {source}")]
    Spawn {
        /// Our name for the process.
        name: String,
        /// The program that was run.
        program: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The log file could not be created.
    #[error("creating log file {path}: {source}")]
    Log {
        /// The log path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Waiting on the child failed.
    #[error("waiting for {name}: {source}")]
    Wait {
        /// Our name for the process.
        name: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

type Hook = Box<dyn Fn() + Send + Sync>;

/// Process groups and cleanup hooks that must be torn down on interrupt.
#[derive(Default)]
struct Registry {
    groups: BTreeMap<i32, String>,
    hooks: BTreeMap<u64, Hook>,
    next_hook: u64,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock must not stop the cleanup of everything else.
    registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers a cleanup hook run on Ctrl-C; returns a key for [`unregister_hook`].
pub fn register_hook(hook: impl Fn() + Send + Sync + 'static) -> u64 {
    let mut reg = lock();
    reg.next_hook += 1;
    let key = reg.next_hook;
    reg.hooks.insert(key, Box::new(hook));
    key
}

/// Removes a hook registered with [`register_hook`] (after its normal cleanup ran).
pub fn unregister_hook(key: u64) {
    lock().hooks.remove(&key);
}

/// Kills every registered process group and runs every hook. Used on interrupt.
pub fn kill_everything() {
    let (groups, hooks) = {
        let mut reg = lock();
        (
            std::mem::take(&mut reg.groups),
            std::mem::take(&mut reg.hooks),
        )
    };
    for (&pgid, name) in &groups {
        eprintln!("[e2e] interrupt: stopping {name} (process group {pgid})");
        signal_group(pgid, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(500));
    for &pgid in groups.keys() {
        signal_group(pgid, libc::SIGKILL);
    }
    // Hooks run at once (each may be a `compose down` waiting for containers to stop).
    std::thread::scope(|scope| {
        for hook in hooks.values() {
            scope.spawn(hook);
        }
    });
}

/// Installs the Ctrl-C / SIGTERM handler: tear everything down, then exit with 130.
/// Safe to call more than once (later calls are ignored).
pub fn install_interrupt_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let result = ctrlc::set_handler(|| {
            eprintln!("[e2e] interrupted: tearing the stack down");
            kill_everything();
            std::process::exit(130);
        });
        if let Err(err) = result {
            eprintln!("[e2e] warning: cannot install the Ctrl-C handler: {err}");
        }
    });
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg has no memory-safety preconditions; a stale group id only yields ESRCH.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// A child process in its own process group, killed (group-wide) on drop.
pub struct ManagedProcess {
    name: String,
    child: Child,
    pgid: i32,
    log_path: Option<PathBuf>,
    exited: Option<ExitStatus>,
}

impl std::fmt::Debug for ManagedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedProcess")
            .field("name", &self.name)
            .field("pgid", &self.pgid)
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl ManagedProcess {
    /// Starts `command` in a new process group with stdout and stderr appended to `log`
    /// (or discarded when `None`), and registers the group for interrupt cleanup.
    pub fn spawn(name: &str, command: Command, log: Option<&Path>) -> Result<Self, ProcessError> {
        Self::spawn_with(name, command, log, false).map(|(p, _)| p)
    }

    /// [`spawn`](Self::spawn) with standard output piped to the caller (standard error
    /// still goes to `log`): for programs whose output is data, e.g. a stream on `pipe:1`.
    pub fn spawn_piped(
        name: &str,
        command: Command,
        log: Option<&Path>,
    ) -> Result<(Self, ChildStdout), ProcessError> {
        let (p, out) = Self::spawn_with(name, command, log, true)?;
        Ok((p, out.expect("stdout is piped")))
    }

    fn spawn_with(
        name: &str,
        mut command: Command,
        log: Option<&Path>,
        pipe_stdout: bool,
    ) -> Result<(Self, Option<ChildStdout>), ProcessError> {
        let (out, err) = match log {
            Some(path) => {
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| ProcessError::Log {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let clone = file.try_clone().map_err(|source| ProcessError::Log {
                    path: path.to_path_buf(),
                    source,
                })?;
                (Stdio::from(file), Stdio::from(clone))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        command
            .stdin(Stdio::null())
            .stdout(if pipe_stdout { Stdio::piped() } else { out })
            .stderr(err)
            .process_group(0);
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            name: name.to_string(),
            program,
            source,
        })?;
        let stdout = child.stdout.take();
        let pgid = child.id() as i32;
        lock().groups.insert(pgid, name.to_string());
        Ok((
            Self {
                name: name.to_string(),
                child,
                pgid,
                log_path: log.map(Path::to_path_buf),
                exited: None,
            },
            stdout,
        ))
    }

    /// Our name for the process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes, if anywhere.
    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    /// Returns the exit status if the process has ended, without blocking.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.exited.is_some() {
            return Ok(self.exited);
        }
        let status = self.child.try_wait().map_err(|source| ProcessError::Wait {
            name: self.name.clone(),
            source,
        })?;
        if status.is_some() {
            self.exited = status;
            // The leader is gone; stop anything it left in its group, then forget it.
            signal_group(self.pgid, libc::SIGKILL);
            lock().groups.remove(&self.pgid);
        }
        Ok(status)
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: i32) {
        if self.exited.is_none() {
            signal_group(self.pgid, signal);
        }
    }

    /// Stops the group: SIGTERM (or SIGINT when `interrupt`, which lets ffmpeg finish
    /// its output file), then SIGKILL after `grace`.
    pub fn stop_with(&mut self, interrupt: bool, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_status() {
            return Some(status);
        }
        self.signal(if interrupt {
            libc::SIGINT
        } else {
            libc::SIGTERM
        });
        match self.wait_timeout(grace) {
            Ok(Some(status)) => Some(status),
            _ => {
                signal_group(self.pgid, libc::SIGKILL);
                let status = self.child.wait().ok();
                self.exited = status;
                lock().groups.remove(&self.pgid);
                status
            }
        }
    }

    /// Stops the group with SIGTERM and a 5 s grace period.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_with(false, Duration::from_secs(5))
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop_with(false, Duration::from_secs(3));
    }
}

/// What a running process holds, read from `/proc/<pid>` (Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Threads (`Threads`).
    pub threads: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fds: u64,
}

impl ProcStats {
    /// Reads the figures of process `pid`; `None` when it is gone (or not readable).
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Self::parse_status(&status, fds)
    }

    /// The figures from the text of `/proc/<pid>/status` and a descriptor count.
    pub fn parse_status(status: &str, fds: u64) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some(Self {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
            fds,
        })
    }
}

/// The last `lines` lines of a text file (empty when it cannot be read).
pub fn tail_file(path: &Path, lines: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    // Read at most the last 256 KiB: logs at DEBUG level grow quickly.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut text = String::new();
    if BufReader::new(file)
        .take(256 * 1024)
        .read_to_string(&mut text)
        .is_err()
    {
        return Vec::new();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Lines of a text file that contain `needle` (the last `max` of them).
pub fn grep_file(path: &Path, needle: &str, max: usize) -> Vec<String> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let matching: Vec<String> = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|line| line.contains(needle))
        .collect();
    matching[matching.len().saturating_sub(max)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when a non-zombie process of group `pgid` exists (from /proc/<pid>/stat).
    fn group_has_live_members(pgid: i32) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            // Fields after the ")" that closes the command name: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
    }

    #[test]
    fn stopping_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("e2e-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sh.log");
        let mut cmd = Command::new("sh");
        // The shell starts a grandchild; killing only the shell would leak it.
        cmd.arg("-c").arg("sleep 30 & echo started; wait");
        let mut proc = ManagedProcess::spawn("sleeper", cmd, Some(&log)).unwrap();
        let pgid = proc.pid() as i32;
        std::thread::sleep(Duration::from_millis(200));
        assert!(proc.try_status().unwrap().is_none());
        proc.stop();
        // Killed members may linger as zombies until init reaps them: look for live ones.
        let deadline = Instant::now() + Duration::from_secs(3);
        while group_has_live_members(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !group_has_live_members(pgid),
            "process group {pgid} survived stop()"
        );
        assert_eq!(tail_file(&log, 5), vec!["started".to_string()]);
        assert_eq!(grep_file(&log, "start", 5).len(), 1);
        assert!(grep_file(&log, "nothing", 5).is_empty());
    }

    #[test]
    fn proc_stats_of_this_process() {
        let me = ProcStats::of(std::process::id()).expect("own /proc entry");
        assert!(me.rss_kib > 0 && me.threads >= 1 && me.fds >= 3, "{me:?}");
        let text = "Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t7\n";
        assert_eq!(
            ProcStats::parse_status(text, 9),
            Some(ProcStats {
                rss_kib: 1234,
                threads: 7,
                fds: 9
            })
        );
        assert_eq!(ProcStats::parse_status("Threads:\t7\n", 9), None);
    }

    #[test]
    fn piped_output_reaches_the_caller() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("printf abc");
        let (mut proc, mut out) = ManagedProcess::spawn_piped("printer", cmd, None).unwrap();
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        assert_eq!(text, "abc");
        assert!(proc.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    }

    #[test]
    fn exit_status_is_reported() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("exit 3");
        let mut proc = ManagedProcess::spawn("exit3", cmd, None).unwrap();
        let status = proc.wait_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
    }
}
