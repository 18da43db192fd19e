//! Docker Compose as the host has it, and the real state of the containers it runs.
//!
//! Two tools answer to "Compose": the `docker compose` plugin (v2) and the standalone
//! `docker-compose` program (v1, what Debian 12 ships). They share the subcommands the suite
//! uses (`up -d`, `stop`, `run --rm --no-deps -T`, `logs`, `down -v --remove-orphans`) but
//! not all flags (v1 has no `up --wait`), so the suite waits for health itself, from the
//! engine's own container state (`docker inspect`), which is also what the lifecycle checks
//! read: a container's id and start time say whether it was restarted, its state whether it
//! still runs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The label both Compose versions put on every container, network and volume they make.
const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label naming a container's service.
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Which Compose program runs the projects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeTool {
    /// `docker compose` (the v2 CLI plugin).
    Plugin {
        /// What `docker compose version --short` printed.
        version: String,
    },
    /// `docker-compose` (the standalone program, v1 or v2).
    Standalone {
        /// What `docker-compose version --short` printed.
        version: String,
    },
}

impl ComposeTool {
    /// Finds the host's Compose once: the plugin first, then the standalone program.
    pub fn detect() -> anyhow::Result<Self> {
        let version = |program: &str, pre: &[&str]| -> Option<String> {
            let out = Command::new(program)
                .args(pre)
                .args(["version", "--short"])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        if let Some(version) = version("docker", &["compose"]) {
            return Ok(Self::Plugin { version });
        }
        if let Some(version) = version("docker-compose", &[]) {
            return Ok(Self::Standalone { version });
        }
        bail!("no Docker Compose found: neither `docker compose` (plugin) nor `docker-compose` answers `version`; install one (Debian: apt-get install docker-compose)")
    }

    /// How the tool is named in the run's output.
    pub fn describe(&self) -> String {
        match self {
            Self::Plugin { version } => format!("`docker compose` plugin {version}"),
            Self::Standalone { version } => format!("`docker-compose` {version}"),
        }
    }

    /// A command running this tool (`docker compose` or `docker-compose`).
    pub fn command(&self) -> Command {
        match self {
            Self::Plugin { .. } => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            Self::Standalone { .. } => Command::new("docker-compose"),
        }
    }
}

/// One compose project: a name and a file.
#[derive(Debug, Clone)]
pub struct Project {
    /// The tool that runs it.
    pub tool: ComposeTool,
    /// `-p` name (lower case).
    pub name: String,
    /// `-f` file.
    pub file: PathBuf,
}

/// What the engine says of one container of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Full container id.
    pub id: String,
    /// Its compose service.
    pub service: String,
    /// `created`, `running`, `exited`, `dead`...
    pub status: String,
    /// `starting`, `healthy`, `unhealthy`; empty without a healthcheck.
    pub health: String,
    /// When its current process started (RFC 3339, from the engine).
    pub started_at: String,
    /// How often the engine restarted it.
    pub restart_count: u32,
    /// Exit code of its last process (meaningful once it stopped).
    pub exit_code: i64,
}

impl Container {
    /// Identity of the running process: a restart changes the start time, a re-creation
    /// the id.
    pub fn identity(&self) -> String {
        format!("{}@{}", &self.id[..12.min(self.id.len())], self.started_at)
    }

    /// Running, and ready: healthy by the engine's healthcheck (or without one), or still
    /// `starting` there while `answers` says the service answers its health endpoint.
    fn is_ready(&self, answers: impl Fn(&str) -> bool) -> bool {
        self.status == "running"
            && match self.health.as_str() {
                "" | "healthy" => true,
                "starting" => answers(&self.service),
                _ => false,
            }
    }
}

impl Project {
    /// The project's command with `env` set for interpolation.
    pub fn command(&self, env: &[(String, String)]) -> Command {
        let mut cmd = self.tool.command();
        cmd.arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .envs(env.iter().cloned())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a subcommand and fails with its stderr when it fails.
    pub fn run(&self, env: &[(String, String)], args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(env)
            .args(args)
            .output()
            .with_context(|| format!("running compose {} for {}", args.join(" "), self.name))?;
        if !out.status.success() {
            bail!(
                "compose {} ({}) failed: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Services the file declares.
    pub fn services(&self) -> anyhow::Result<Vec<String>> {
        Ok(crate::contract::compose_services(&self.file)?)
    }

    /// The project's containers as the engine sees them (stopped ones included).
    pub fn containers(&self) -> anyhow::Result<Vec<Container>> {
        let out = docker(&[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label={PROJECT_LABEL}={}", self.name),
        ])?;
        let ids: Vec<&str> = out.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let format = format!(
            "{{{{.Id}}}}|{{{{index .Config.Labels \"{SERVICE_LABEL}\"}}}}|{{{{.State.Status}}}}|{{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{end}}}}|{{{{.State.StartedAt}}}}|{{{{.RestartCount}}}}|{{{{.State.ExitCode}}}}"
        );
        let mut args = vec!["inspect", "--format", &format];
        args.extend(ids);
        let text = docker(&args)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_container)
            .collect()
    }

    /// The running container of `service` (an error when it has none, or it is not running).
    pub fn running(&self, service: &str) -> anyhow::Result<Container> {
        let all = self.containers()?;
        let c = all
            .iter()
            .find(|c| c.service == service)
            .with_context(|| format!("{}: no container of service {service}", self.name))?;
        if c.status != "running" {
            bail!(
                "{}: {service} container {} is {} (exit code {})",
                self.name,
                &c.id[..12.min(c.id.len())],
                c.status,
                c.exit_code
            );
        }
        Ok(c.clone())
    }

    /// `up -d`, then waits until every service's container runs and is ready (see
    /// [`wait_ready`](Self::wait_ready)).
    pub fn up(
        &self,
        env: &[(String, String)],
        timeout: Duration,
        answers: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        self.run(env, &["up", "-d"])?;
        self.wait_ready(timeout, answers)
    }

    /// Waits until each declared service has a running container that is healthy, or
    /// whose first healthcheck is still to come while `answers(service)` says it answers
    /// its health endpoint from outside (the suite's own probe through the published port:
    /// the engine's healthchecks run every 10 s, not often enough to wait on, see the
    /// compose files). Fails at once when a container exits or turns unhealthy.
    pub fn wait_ready(
        &self,
        timeout: Duration,
        answers: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let services = self.services()?;
        let started = Instant::now();
        loop {
            let containers = self.containers()?;
            if let Some(dead) = containers
                .iter()
                .find(|c| matches!(c.status.as_str(), "exited" | "dead") || c.health == "unhealthy")
            {
                bail!(
                    "{}: {} is {}{} (exit code {})",
                    self.name,
                    dead.service,
                    dead.status,
                    if dead.health.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", dead.health)
                    },
                    dead.exit_code
                );
            }
            let up = services.iter().all(|s| {
                containers
                    .iter()
                    .any(|c| &c.service == s && c.is_ready(&answers))
            });
            if up {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let states: Vec<String> = containers
                    .iter()
                    .map(|c| format!("{} {} {}", c.service, c.status, c.health))
                    .collect();
                bail!(
                    "{}: not healthy after {timeout:?} ({})",
                    self.name,
                    states.join("; ")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `down -v --remove-orphans`: containers, the network and the volumes go.
    pub fn down(&self) -> anyhow::Result<()> {
        self.run(&[], &["down", "-v", "--remove-orphans", "-t", "5"])
            .map(|_| ())
    }
}

fn parse_container(line: &str) -> anyhow::Result<Container> {
    let f: Vec<&str> = line.trim().split('|').collect();
    if f.len() != 7 {
        bail!("unexpected `docker inspect` line: {line:?}");
    }
    Ok(Container {
        id: f[0].to_string(),
        service: f[1].to_string(),
        status: f[2].to_string(),
        health: f[3].to_string(),
        started_at: f[4].to_string(),
        restart_count: f[5].parse().unwrap_or(0),
        exit_code: f[6].parse().unwrap_or(0),
    })
}

/// Runs `docker ARGS` and returns stdout; fails with stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How long a stopped container's process ran (its start to finish time in the engine).
pub fn container_run_time(container: &str) -> anyhow::Result<Duration> {
    let out = docker(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.StartedAt}} {{.State.FinishedAt}}",
        container,
    ])?;
    let mut it = out.split_whitespace();
    let (Some(status), Some(start), Some(end)) = (it.next(), it.next(), it.next()) else {
        bail!("{container}: no status and start/finish times in {out:?}");
    };
    run_time(
        container,
        status,
        rfc3339_nanos(start)?,
        rfc3339_nanos(end)?,
    )
}

/// The run time from an engine's state: an exited container whose finish time reads a
/// little before its start (seen: 2 ms, a process that exits at once: the engine stamps
/// the start after the process is already running) ran for no measurable time.
fn run_time(container: &str, status: &str, start: i128, end: i128) -> anyhow::Result<Duration> {
    if !matches!(status, "exited" | "dead") {
        bail!("{container} has not finished (state {status})");
    }
    Ok(Duration::from_nanos((end - start).max(0) as u64))
}

/// Nanoseconds since 1970 of an engine timestamp (`2026-12-02T05:40:23.325977251Z`).
fn rfc3339_nanos(text: &str) -> anyhow::Result<i128> {
    let bad = || anyhow::anyhow!("not an RFC 3339 UTC time: {text:?}");
    let (date, time) = text.trim_end_matches('Z').split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i128 = digits.parse().map_err(|_| bad())?;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    Ok(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Whether the engine has an image.
pub fn image_present(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the engine holds of one compose project: a container, network or volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// `container`, `network` or `volume`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The compose project it belongs to.
    pub project: String,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (project {})", self.kind, self.name, self.project)
    }
}

/// Containers, networks and volumes of every compose project whose name starts with
/// `prefix`.
pub fn leftovers(prefix: &str) -> anyhow::Result<Vec<Leftover>> {
    let mut found = Vec::new();
    for (kind, list, name) in [
        ("container", &["ps", "-a"][..], "{{.Names}}"),
        ("network", &["network", "ls"][..], "{{.Name}}"),
        ("volume", &["volume", "ls"][..], "{{.Name}}"),
    ] {
        let filter = format!("label={PROJECT_LABEL}");
        let format = format!("{name}|{{{{.Label \"{PROJECT_LABEL}\"}}}}");
        let mut args = list.to_vec();
        args.extend(["--filter", &filter, "--format", &format]);
        for line in docker(&args)?.lines() {
            if let Some((name, project)) = line.split_once('|') {
                if project.starts_with(prefix) {
                    found.push(Leftover {
                        kind,
                        name: name.to_string(),
                        project: project.to_string(),
                    });
                }
            }
        }
    }
    Ok(found)
}

/// Removes what [`leftovers`] found (containers first, then networks, then volumes).
pub fn remove(leftovers: &[Leftover]) {
    for (kind, cmd) in [
        ("container", &["rm", "-f", "-v"][..]),
        ("network", &["network", "rm"][..]),
        ("volume", &["volume", "rm", "-f"][..]),
    ] {
        for l in leftovers.iter().filter(|l| l.kind == kind) {
            let mut args = cmd.to_vec();
            args.push(&l.name);
            if let Err(e) = docker(&args) {
                eprintln!("[e2e] could not remove {l}: {e:#}");
            }
        }
    }
}

/// Shows that [`leftovers`] sees what a project leaves: plants a network and a volume
/// labelled as project `<prefix>-selfcheck`, expects both to be found, removes them and
/// expects nothing left. Fails when the listing would miss a real leftover.
pub fn self_check_leftovers(prefix: &str) -> anyhow::Result<()> {
    let project = format!("{prefix}-selfcheck");
    let label = format!("{PROJECT_LABEL}={project}");
    let name = format!("{project}_planted");
    docker(&["network", "create", "--label", &label, &name])?;
    docker(&["volume", "create", "--label", &label, &name])?;
    let found = leftovers(&project)?;
    remove(&found);
    let after = leftovers(&project)?;
    let kinds: Vec<&str> = found.iter().map(|l| l.kind).collect();
    if !(kinds.contains(&"network") && kinds.contains(&"volume")) {
        bail!("teardown self-check: a planted network and volume of project {project} were not found (found: {kinds:?})");
    }
    if !after.is_empty() {
        bail!("teardown self-check: removing the planted leftovers of {project} failed: {after:?}");
    }
    Ok(())
}

/// The uid:gid of this process, for containers that write into host folders.
pub fn host_user() -> String {
    // SAFETY: getuid/getgid cannot fail and have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    format!("{uid}:{gid}")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_container_that_exited_at_once_ran_for_zero() {
        assert_eq!(run_time("c", "exited", 1_000, 998).unwrap(), Duration::ZERO);
        assert_eq!(
            run_time("c", "exited", 1_000, 3_000).unwrap(),
            Duration::from_nanos(2_000)
        );
        assert!(run_time("c", "running", 1_000, 0)
            .unwrap_err()
            .to_string()
            .contains("state running"));
    }

    use super::*;

    #[test]
    fn inspect_lines_parse() {
        let c = parse_container(
            "abcdef0123456789|sts-service|running|healthy|2026-12-02T05:00:00.1Z|0|0",
        )
        .unwrap();
        assert_eq!(c.service, "sts-service");
        let never = |_: &str| false;
        let always = |_: &str| true;
        assert!(c.is_ready(never), "healthy is ready without a probe");
        assert_eq!(c.identity(), "abcdef012345@2026-12-02T05:00:00.1Z");
        let stopped =
            parse_container("abcdef0123456789|mediamtx|exited||2026-12-02T05:00:00Z|0|137")
                .unwrap();
        assert!(
            !stopped.is_ready(always),
            "an exited container is never ready"
        );
        assert_eq!(stopped.exit_code, 137);
        let starting =
            parse_container("abcdef0123456789|media-service|running|starting|t|0|0").unwrap();
        assert!(
            !starting.is_ready(never),
            "starting and not answering is not ready"
        );
        assert!(
            starting.is_ready(|s: &str| s == "media-service"),
            "starting but answering its own health endpoint is ready"
        );
        assert!(
            !starting.is_ready(|s: &str| s == "sts-service"),
            "another service's answer does not count"
        );
        let unhealthy =
            parse_container("abcdef0123456789|sts-service|running|unhealthy|t|0|0").unwrap();
        assert!(
            !unhealthy.is_ready(always),
            "unhealthy is not ready even when a probe answers"
        );
        assert!(parse_container("too|few").is_err());
    }

    #[test]
    fn engine_timestamps_parse() {
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            rfc3339_nanos("1970-01-02T00:00:01.5Z").unwrap(),
            86_401_500_000_000
        );
        let a = rfc3339_nanos("2026-12-02T05:40:23.325977251Z").unwrap();
        let b = rfc3339_nanos("2026-12-02T05:40:24.000000001Z").unwrap();
        assert_eq!(b - a, 674_022_750);
        // Across a month and a leap day.
        let feb = rfc3339_nanos("2028-02-28T23:59:59Z").unwrap();
        let mar = rfc3339_nanos("2028-03-01T00:00:00Z").unwrap();
        assert_eq!(mar - feb, 86_401 * 1_000_000_000);
        assert!(rfc3339_nanos("yesterday").is_err());
        // The zero time of a container that never finished.
        assert!(rfc3339_nanos("0001-01-01T00:00:00Z").unwrap() < 0);
    }
}
