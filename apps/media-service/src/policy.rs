//! What the network control API may ask a worker to read and write. `POST /v1/streams`
//! comes from whoever reaches the port, so its `input` and `output` are checked here, in one
//! place, before a worker opens anything:
//!
//! - inputs: `rtsp`, `rtsps`, `rtspt`, `rtmp`, `rtmps` and `srt` URIs; `http(s)://` only from
//!   a host in ALLOWED_INPUT_HOSTS; local files (a path or `file://`) only under INPUT_DIR;
//! - outputs: RTMP to the media server (MEDIAMTX_HOST:MEDIAMTX_RTMP_PORT) or to a host in
//!   ALLOWED_OUTPUT_HOSTS; files only under OUTPUT_DIR.
//!
//! Paths are resolved against their directory (relative ones are taken relative to it),
//! `..` components are refused, and symbolic links are resolved before the check, so a link
//! cannot lead out of the directory. The `dub` subcommand (a local operator's CLI) is not
//! subject to this policy.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use gstreamer::glib;

use crate::config::Settings;
use crate::pipeline::{OutputTarget, TargetError};

/// Input schemes accepted from any host.
pub const LIVE_INPUT_SCHEMES: [&str; 6] = ["rtsp", "rtsps", "rtspt", "rtmp", "rtmps", "srt"];

/// One entry of ALLOWED_INPUT_HOSTS / ALLOWED_OUTPUT_HOSTS: a host (any port) or host:port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Lower-case host name or IP address, without brackets.
    host: String,
    /// Only this port, or any.
    port: Option<u16>,
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.host.contains(':');
        match (bracket, self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (false, None) => f.write_str(&self.host),
        }
    }
}

/// A comma-separated host allow list (empty: nothing allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList(Vec<HostRule>);

impl HostList {
    /// Parses `host[:port],...`; IPv6 addresses as `[::1]` or `[::1]:1935`. Empty: none.
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = |e: &str| {
            format!("'{e}' is not a host: expected a comma-separated list of HOST or HOST:PORT (IPv6 as [ADDR] or [ADDR]:PORT), e.g. cdn.example.com,10.0.0.5:1935")
        };
        let mut rules = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (host, port) = split_host_port(item).ok_or_else(|| err(item))?;
            rules.push(HostRule {
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        Ok(Self(rules))
    }

    /// Whether `host` (any case, IPv6 with or without brackets) at `port` is listed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let h = unbracket(host);
        self.0
            .iter()
            .any(|r| r.host.eq_ignore_ascii_case(h) && r.port.is_none_or(|p| p == port))
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for HostList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn unbracket(h: &str) -> &str {
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h)
}

fn host_chars_ok(h: &str) -> bool {
    !h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` -> (host without brackets, port).
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let port = |p: &str| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u16>().ok())
            .flatten()
            .filter(|p| *p > 0)
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((v6, None)),
            a => Some((v6, Some(port(a.strip_prefix(':')?)?))),
        };
    }
    match s.split_once(':') {
        None => host_chars_ok(s).then_some((s, None)),
        Some((h, p)) if host_chars_ok(h) => Some((h, Some(port(p)?))),
        Some(_) => None,
    }
}

/// A request the policy refuses (400). Each names what is wrong and what is accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An input scheme that is never accepted.
    #[error("input '{input}': scheme '{scheme}' is not accepted; accepted: rtsp://, rtsps://, rtspt://, rtmp://, rtmps://, srt:// from any host, http(s):// from hosts in ALLOWED_INPUT_HOSTS, local files under INPUT_DIR")]
    InputScheme {
        /// As given.
        input: String,
        /// Its scheme.
        scheme: String,
    },
    /// A URI whose host cannot be read unambiguously.
    #[error("input '{input}' is not a well-formed URI: expected SCHEME://[USER@]HOST[:PORT]/PATH with a plain host name or address")]
    MalformedUri {
        /// As given.
        input: String,
    },
    /// An http(s) input from a host not in ALLOWED_INPUT_HOSTS.
    #[error("input '{input}': http(s) inputs are accepted only from ALLOWED_INPUT_HOSTS ({allowed}); host {host}:{port} is not listed")]
    InputHost {
        /// As given.
        input: String,
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
        /// ALLOWED_INPUT_HOSTS.
        allowed: String,
    },
    /// A local file while INPUT_DIR is not set.
    #[error("input '{input}' is a local file: file inputs are refused because INPUT_DIR is not set (set it to the folder the API may read files from)")]
    FileInputsOff {
        /// As given.
        input: String,
    },
    /// A file URI naming another machine.
    #[error("input '{input}': file:// URIs must name a local file (file:///PATH)")]
    RemoteFileUri {
        /// As given.
        input: String,
    },
    /// A path with a `..` component.
    #[error("{what} '{path}' contains a '..' component: give a path inside {dir_var}={dir} without '..'")]
    ParentComponent {
        /// `input` or `output`.
        what: &'static str,
        /// As given.
        path: String,
        /// INPUT_DIR or OUTPUT_DIR.
        dir_var: &'static str,
        /// Its value.
        dir: String,
    },
    /// An input file that does not exist (or cannot be resolved).
    #[error("input '{input}' is not an existing file under INPUT_DIR={dir}")]
    InputMissing {
        /// As given.
        input: String,
        /// INPUT_DIR.
        dir: String,
    },
    /// A path that resolves outside its directory (absolute elsewhere, or a link).
    #[error("{what} '{path}' resolves to {resolved}, outside {dir_var}={dir}: only paths inside it are accepted")]
    OutsideDir {
        /// `input` or `output`.
        what: &'static str,
        /// As given.
        path: String,
        /// Where it leads.
        resolved: String,
        /// INPUT_DIR or OUTPUT_DIR.
        dir_var: &'static str,
        /// Its value.
        dir: String,
    },
    /// An RTMP output to a host that is neither the media server nor allowed.
    #[error("output '{output}': RTMP outputs go to the media server {server} (MEDIAMTX_HOST:MEDIAMTX_RTMP_PORT) or to ALLOWED_OUTPUT_HOSTS ({allowed}); {host}:{port} is neither")]
    OutputHost {
        /// As given.
        output: String,
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
        /// MEDIAMTX_HOST:MEDIAMTX_RTMP_PORT.
        server: String,
        /// ALLOWED_OUTPUT_HOSTS.
        allowed: String,
    },
    /// A file output while OUTPUT_DIR is not set.
    #[error("output '{output}' is a file: file outputs are refused because OUTPUT_DIR is not set (set it to the folder the API may write files to)")]
    FileOutputsOff {
        /// As given.
        output: String,
    },
    /// A file output whose folder does not exist.
    #[error("output '{output}': its folder does not exist under OUTPUT_DIR={dir} (the API does not create folders)")]
    OutputFolderMissing {
        /// As given.
        output: String,
        /// OUTPUT_DIR.
        dir: String,
    },
    /// A file output that exists and is not a regular file.
    #[error("output '{output}' exists and is not a regular file (a link or a folder): choose another name under OUTPUT_DIR={dir}")]
    OutputNotAFile {
        /// As given.
        output: String,
        /// OUTPUT_DIR.
        dir: String,
    },
    /// An output the pipeline does not understand.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// INPUT_DIR or OUTPUT_DIR that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    /// Not an existing folder.
    #[error("invalid {var}={dir}: not an existing folder ({reason}); create it or unset {var}")]
    Dir {
        /// INPUT_DIR or OUTPUT_DIR.
        var: &'static str,
        /// Its value.
        dir: String,
        /// Why.
        reason: String,
    },
}

/// A folder the API may read from or write to, canonical (links resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedDir {
    var: &'static str,
    canonical: PathBuf,
}

impl AllowedDir {
    fn new(var: &'static str, dir: &Path) -> Result<Self, PolicyConfigError> {
        let bad = |reason: String| PolicyConfigError::Dir {
            var,
            dir: dir.display().to_string(),
            reason,
        };
        let canonical = std::fs::canonicalize(dir).map_err(|e| bad(e.to_string()))?;
        if !canonical.is_dir() {
            return Err(bad("not a folder".into()));
        }
        Ok(Self { var, canonical })
    }

    fn shown(&self) -> String {
        self.canonical.display().to_string()
    }

    /// `path` taken relative to the folder unless absolute; `..` refused.
    fn join(&self, what: &'static str, raw: &str, path: &Path) -> Result<PathBuf, PolicyError> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(PolicyError::ParentComponent {
                what,
                path: raw.into(),
                dir_var: self.var,
                dir: self.shown(),
            });
        }
        Ok(self.canonical.join(path))
    }

    fn contain(
        &self,
        what: &'static str,
        raw: &str,
        resolved: PathBuf,
    ) -> Result<PathBuf, PolicyError> {
        if resolved.starts_with(&self.canonical) {
            Ok(resolved)
        } else {
            Err(PolicyError::OutsideDir {
                what,
                path: raw.into(),
                resolved: resolved.display().to_string(),
                dir_var: self.var,
                dir: self.shown(),
            })
        }
    }
}

/// The checks of the control API, built once at start from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPolicy {
    media_server_host: String,
    media_server_rtmp_port: u16,
    input_hosts: HostList,
    output_hosts: HostList,
    input_dir: Option<AllowedDir>,
    output_dir: Option<AllowedDir>,
}

impl StreamPolicy {
    /// From ALLOWED_INPUT_HOSTS, INPUT_DIR, ALLOWED_OUTPUT_HOSTS, OUTPUT_DIR and the media
    /// server's address; INPUT_DIR and OUTPUT_DIR must be existing folders.
    pub fn from_settings(s: &Settings) -> Result<Self, PolicyConfigError> {
        Ok(Self {
            media_server_host: s.mediamtx_host.clone(),
            media_server_rtmp_port: s.mediamtx_rtmp_port,
            input_hosts: s.allowed_input_hosts.clone().unwrap_or_default(),
            output_hosts: s.allowed_output_hosts.clone().unwrap_or_default(),
            input_dir: s
                .input_dir
                .as_deref()
                .map(|d| AllowedDir::new("INPUT_DIR", d))
                .transpose()?,
            output_dir: s
                .output_dir
                .as_deref()
                .map(|d| AllowedDir::new("OUTPUT_DIR", d))
                .transpose()?,
        })
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let dir = |d: &Option<AllowedDir>, var: &str| {
            d.as_ref().map_or(format!("refused ({var} unset)"), |d| {
                format!("under {}", d.shown())
            })
        };
        format!(
            "inputs: rtsp/rtsps/rtspt/rtmp/rtmps/srt from any host, http(s) from ALLOWED_INPUT_HOSTS ({}), files {}; outputs: rtmp to the media server {}:{} or ALLOWED_OUTPUT_HOSTS ({}), files {}",
            self.input_hosts,
            dir(&self.input_dir, "INPUT_DIR"),
            self.media_server_host,
            self.media_server_rtmp_port,
            self.output_hosts,
            dir(&self.output_dir, "OUTPUT_DIR"),
        )
    }

    /// Checks a requested input; returns the URI the worker opens (files: the resolved
    /// `file://` URI). Touches the file system for file inputs: call it off async threads.
    pub fn input(&self, raw: &str) -> Result<String, PolicyError> {
        let Some((scheme, rest)) = raw.split_once("://") else {
            return self.local_input(raw, PathBuf::from(raw));
        };
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            s if LIVE_INPUT_SCHEMES.contains(&s) => {
                authority(rest).ok_or_else(|| PolicyError::MalformedUri { input: raw.into() })?;
                Ok(raw.to_string())
            }
            "http" | "https" => {
                let (host, port) = authority(rest)
                    .ok_or_else(|| PolicyError::MalformedUri { input: raw.into() })?;
                let port = port.unwrap_or(if scheme == "http" { 80 } else { 443 });
                if self.input_hosts.allows(host, port) {
                    Ok(raw.to_string())
                } else {
                    Err(PolicyError::InputHost {
                        input: raw.into(),
                        host: host.into(),
                        port,
                        allowed: self.input_hosts.to_string(),
                    })
                }
            }
            "file" => {
                let (path, host) = glib::filename_from_uri(raw)
                    .map_err(|_| PolicyError::MalformedUri { input: raw.into() })?;
                if host.is_some_and(|h| !h.is_empty() && !h.eq_ignore_ascii_case("localhost")) {
                    return Err(PolicyError::RemoteFileUri { input: raw.into() });
                }
                self.local_input(raw, path)
            }
            _ => Err(PolicyError::InputScheme {
                input: raw.into(),
                scheme,
            }),
        }
    }

    fn local_input(&self, raw: &str, path: PathBuf) -> Result<String, PolicyError> {
        let dir = self
            .input_dir
            .as_ref()
            .ok_or_else(|| PolicyError::FileInputsOff { input: raw.into() })?;
        let joined = dir.join("input", raw, &path)?;
        let missing = || PolicyError::InputMissing {
            input: raw.into(),
            dir: dir.shown(),
        };
        let canonical = std::fs::canonicalize(&joined).map_err(|_| missing())?;
        let canonical = dir.contain("input", raw, canonical)?;
        if !canonical.is_file() {
            return Err(missing());
        }
        glib::filename_to_uri(&canonical, None)
            .map(|u| u.to_string())
            .map_err(|_| missing())
    }

    /// Checks a requested output; returns the target the worker writes (files: the
    /// resolved path). Touches the file system for file outputs: call it off async threads.
    pub fn output(&self, raw: &str) -> Result<OutputTarget, PolicyError> {
        let target = OutputTarget::parse(raw)?;
        match &target {
            OutputTarget::Rtmp { host, port, .. } => {
                let port = *port;
                let to_server = unbracket(host)
                    .eq_ignore_ascii_case(unbracket(&self.media_server_host))
                    && port == self.media_server_rtmp_port;
                if to_server || self.output_hosts.allows(host, port) {
                    Ok(target)
                } else {
                    Err(PolicyError::OutputHost {
                        output: raw.into(),
                        host: host.clone(),
                        port,
                        server: format!(
                            "{}:{}",
                            self.media_server_host, self.media_server_rtmp_port
                        ),
                        allowed: self.output_hosts.to_string(),
                    })
                }
            }
            OutputTarget::File { path, container } => {
                let dir = self
                    .output_dir
                    .as_ref()
                    .ok_or_else(|| PolicyError::FileOutputsOff { output: raw.into() })?;
                let joined = dir.join("output", raw, path)?;
                // The file need not exist: resolve its folder (links included) and keep
                // the name, which the parser ended in .mp4/.mkv/.flv.
                let (Some(parent), Some(name)) = (joined.parent(), joined.file_name()) else {
                    return Err(PolicyError::Target(TargetError::Unsupported(raw.into())));
                };
                let parent = std::fs::canonicalize(parent).map_err(|_| {
                    PolicyError::OutputFolderMissing {
                        output: raw.into(),
                        dir: dir.shown(),
                    }
                })?;
                let resolved = dir.contain("output", raw, parent.join(name))?;
                match std::fs::symlink_metadata(&resolved) {
                    Ok(m) if !m.file_type().is_file() => Err(PolicyError::OutputNotAFile {
                        output: raw.into(),
                        dir: dir.shown(),
                    }),
                    _ => Ok(OutputTarget::File {
                        path: resolved,
                        container: *container,
                    }),
                }
            }
        }
    }
}

/// Host and port of `rest` (what follows `scheme://`): the authority ends at the first `/`,
/// `?` or `#`; user info ends at its last `@`. Anything a URI parser might read differently
/// (backslashes, percent-encoding or spaces in the host) is refused.
fn authority(rest: &str) -> Option<(&str, Option<u16>)> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    if auth
        .chars()
        .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let hostport = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    split_host_port(hostport)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Container;

    fn policy() -> StreamPolicy {
        StreamPolicy {
            media_server_host: "127.0.0.1".into(),
            media_server_rtmp_port: 1935,
            input_hosts: HostList::default(),
            output_hosts: HostList::default(),
            input_dir: None,
            output_dir: None,
        }
    }

    fn with_dirs(input: &Path, output: &Path) -> StreamPolicy {
        StreamPolicy {
            input_dir: Some(AllowedDir::new("INPUT_DIR", input).unwrap()),
            output_dir: Some(AllowedDir::new("OUTPUT_DIR", output).unwrap()),
            ..policy()
        }
    }

    #[test]
    fn host_lists_parse_and_match() {
        let l = HostList::parse(" cdn.Example.com, 10.0.0.5:1936 ,[::1],[fd00::2]:80,").unwrap();
        assert_eq!(
            l.to_string(),
            "cdn.example.com,10.0.0.5:1936,[::1],[fd00::2]:80"
        );
        assert!(l.allows("CDN.example.com", 443));
        assert!(l.allows("10.0.0.5", 1936) && !l.allows("10.0.0.5", 1935));
        assert!(l.allows("::1", 1) && l.allows("[::1]", 1));
        assert!(l.allows("fd00::2", 80) && !l.allows("fd00::2", 81));
        assert!(!l.allows("example.com", 443));
        assert!(HostList::parse("").unwrap().is_empty());
        assert_eq!(HostList::default().to_string(), "none");
        for bad in [
            "http://x", "a/b", "h:port", "h:0", "h:70000", "::1", "[zz]", "a b",
        ] {
            let e = HostList::parse(bad).unwrap_err();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn live_schemes_are_accepted_from_any_host() {
        let p = policy();
        for i in [
            "rtsp://cam.local:8554/live/a/in",
            "RTSPS://user:pw@10.1.2.3/x",
            "rtmp://other/live/x",
            "srt://[fd00::1]:9000?mode=caller",
        ] {
            assert_eq!(p.input(i).as_deref(), Ok(i), "{i}");
        }
    }

    #[test]
    fn other_schemes_are_refused() {
        let p = policy();
        for (i, scheme) in [
            ("udp://0.0.0.0:5000", "udp"),
            ("appsrc://x", "appsrc"),
            ("ftp://h/x.mp4", "ftp"),
        ] {
            let e = p.input(i).unwrap_err();
            assert_eq!(
                e,
                PolicyError::InputScheme {
                    input: i.into(),
                    scheme: scheme.into()
                }
            );
            assert!(e.to_string().contains("accepted: rtsp://"), "{e}");
        }
    }

    #[test]
    fn http_inputs_need_an_allowed_host() {
        let p = policy();
        let e = p.input("http://internal-host/secret.mp4").unwrap_err();
        assert!(
            matches!(&e, PolicyError::InputHost { host, port: 80, .. } if host == "internal-host"),
            "{e:?}"
        );
        assert!(e.to_string().contains("ALLOWED_INPUT_HOSTS (none)"), "{e}");
        let p = StreamPolicy {
            input_hosts: HostList::parse("media.example.com,10.0.0.9:8080").unwrap(),
            ..policy()
        };
        assert!(p.input("https://media.example.com/a.m3u8").is_ok());
        assert!(p.input("http://u:p@10.0.0.9:8080/x").is_ok());
        assert!(
            p.input("http://10.0.0.9/x").is_err(),
            "port 80 is not listed"
        );
        // The real host is after the user info.
        let e = p
            .input("http://media.example.com@169.254.169.254/")
            .unwrap_err();
        assert!(matches!(&e, PolicyError::InputHost { host, .. } if host == "169.254.169.254"));
        assert!(p.input("http://evil.com#@media.example.com/").is_err());
        for odd in [
            "http://media.example.com\\@evil.com/",
            "http://%6dedia.example.com/",
            "http:///x",
            "http://media.example.com:/x",
        ] {
            assert_eq!(
                p.input(odd),
                Err(PolicyError::MalformedUri { input: odd.into() }),
                "{odd}"
            );
        }
    }

    #[test]
    fn file_inputs_are_refused_without_input_dir() {
        let p = policy();
        for i in ["/etc/passwd", "file:///etc/passwd", "clip.mp4"] {
            assert_eq!(
                p.input(i),
                Err(PolicyError::FileInputsOff { input: i.into() }),
                "{i}"
            );
        }
        assert!(matches!(
            p.input("file://otherhost/etc/passwd"),
            Err(PolicyError::RemoteFileUri { .. })
        ));
    }

    #[test]
    fn file_inputs_only_under_input_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let (ind, outd) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir_all(&ind).unwrap();
        std::fs::create_dir_all(&outd).unwrap();
        std::fs::write(ind.join("clip.mp4"), b"x").unwrap();
        std::fs::write(tmp.path().join("secret.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.mp4"), ind.join("link.mp4")).unwrap();
        let p = with_dirs(&ind, &outd);
        let canon = std::fs::canonicalize(ind.join("clip.mp4")).unwrap();
        let uri = glib::filename_to_uri(&canon, None).unwrap().to_string();
        assert_eq!(p.input("clip.mp4").as_deref(), Ok(uri.as_str()));
        assert_eq!(
            p.input(canon.to_str().unwrap()).as_deref(),
            Ok(uri.as_str())
        );
        assert_eq!(p.input(&uri).as_deref(), Ok(uri.as_str()));
        let e = p.input("../secret.mp4").unwrap_err();
        assert!(
            matches!(e, PolicyError::ParentComponent { what: "input", .. }),
            "{e:?}"
        );
        let secret = tmp.path().join("secret.mp4");
        let e = p.input(secret.to_str().unwrap()).unwrap_err();
        assert!(
            matches!(e, PolicyError::OutsideDir { what: "input", .. }),
            "{e:?}"
        );
        let e = p.input("link.mp4").unwrap_err();
        assert!(
            matches!(e, PolicyError::OutsideDir { .. }),
            "a link out is refused: {e:?}"
        );
        assert!(e.to_string().contains("INPUT_DIR="), "{e}");
        assert!(matches!(
            p.input("nope.mp4"),
            Err(PolicyError::InputMissing { .. })
        ));
        assert!(
            matches!(p.input("."), Err(PolicyError::InputMissing { .. })),
            "a folder is not a file"
        );
    }

    #[test]
    fn rtmp_outputs_go_to_the_media_server_or_allowed_hosts() {
        let p = policy();
        assert!(p.output("rtmp://127.0.0.1:1935/live/a/out").is_ok());
        assert!(
            p.output("rtmp://127.0.0.1/live/a/out").is_ok(),
            "default port"
        );
        let e = p.output("rtmp://evil.example/live/x").unwrap_err();
        assert!(
            matches!(&e, PolicyError::OutputHost { host, port: 1935, .. } if host == "evil.example"),
            "{e:?}"
        );
        let m = e.to_string();
        assert!(
            m.contains("127.0.0.1:1935") && m.contains("ALLOWED_OUTPUT_HOSTS (none)"),
            "{m}"
        );
        assert!(
            p.output("rtmp://127.0.0.1:1936/live/x").is_err(),
            "other port"
        );
        let p = StreamPolicy {
            output_hosts: HostList::parse("live.example.com").unwrap(),
            ..policy()
        };
        assert!(p.output("rtmp://live.example.com:1940/app/key").is_ok());
        assert!(p.output("rtmp://x@live.example.com/app/key").is_err());
        assert!(matches!(
            p.output("rtmp://live.example.com/app"),
            Err(PolicyError::Target(TargetError::RtmpPath(_)))
        ));
        assert!(matches!(
            p.output("out.avi"),
            Err(PolicyError::Target(TargetError::Unsupported(_)))
        ));
    }

    #[test]
    fn file_outputs_only_under_output_dir() {
        let p = policy();
        assert_eq!(
            p.output("/tmp/x.mp4"),
            Err(PolicyError::FileOutputsOff {
                output: "/tmp/x.mp4".into()
            })
        );
        let tmp = tempfile::tempdir().unwrap();
        let (ind, outd) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir_all(outd.join("sub")).unwrap();
        std::fs::create_dir_all(&ind).unwrap();
        std::os::unix::fs::symlink(tmp.path(), outd.join("escape")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("victim"), outd.join("dangling.mp4")).unwrap();
        let p = with_dirs(&ind, &outd);
        let canon = std::fs::canonicalize(&outd).unwrap();
        assert_eq!(
            p.output("a.mkv"),
            Ok(OutputTarget::File {
                path: canon.join("a.mkv"),
                container: Container::Mkv
            })
        );
        let abs = canon.join("sub/b.mp4");
        assert_eq!(
            p.output(&format!("file://{}", abs.display())),
            Ok(OutputTarget::File {
                path: abs.clone(),
                container: Container::Mp4
            })
        );
        let e = p.output("sub/../../x.mp4").unwrap_err();
        assert!(
            matches!(e, PolicyError::ParentComponent { what: "output", .. }),
            "{e:?}"
        );
        let e = p.output("/etc/x.flv").unwrap_err();
        assert!(
            matches!(e, PolicyError::OutsideDir { what: "output", .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("OUTPUT_DIR="), "{e}");
        let e = p.output("escape/x.mp4").unwrap_err();
        assert!(
            matches!(e, PolicyError::OutsideDir { .. }),
            "a folder link out: {e:?}"
        );
        let e = p.output("dangling.mp4").unwrap_err();
        assert!(
            matches!(e, PolicyError::OutputNotAFile { .. }),
            "a link as the file: {e:?}"
        );
        let e = p.output("missing/x.mp4").unwrap_err();
        assert!(
            matches!(e, PolicyError::OutputFolderMissing { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn directories_must_exist() {
        let e = AllowedDir::new("OUTPUT_DIR", Path::new("/nonexistent/livedub-out")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid OUTPUT_DIR=/nonexistent/livedub-out: not an existing folder"),
            "{e}"
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(AllowedDir::new("INPUT_DIR", f.path()).is_err());
    }
}
