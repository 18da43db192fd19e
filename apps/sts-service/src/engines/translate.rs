//! Machine translation: a resident Apertium pipeline (offline default), LibreTranslate and
//! Google Cloud Translation v2 over HTTP.
//!
//! Apertium: `apertium <pair>` starts ~13 processes per call (~260 ms). Instead the mode's
//! pipeline is generated in null-flush form (`apertium-wblank-mode -z`) and kept running;
//! each request writes `TEXT[\n].[]\0` and reads up to the answering `\0` (~3 ms). The
//! pipeline lives on one dedicated thread; on any failure or a stuck read it is killed
//! (whole process group) and restarted for the next request.

use super::http_error;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Directory holding Apertium `.mode` files.
pub const APERTIUM_MODES_DIR: &str = "/usr/share/apertium/modes";

/// Errors of translation.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The language pair is not installed / supported.
    #[error("translation {src}->{tgt} not supported by {provider} (available: {available})")]
    Pair {
        /// Source language.
        src: String,
        /// Target language.
        tgt: String,
        /// Provider name.
        provider: &'static str,
        /// Pairs available.
        available: String,
    },
    /// The provider failed.
    #[error("{provider} translation failed: {reason}")]
    Failed {
        /// Provider name.
        provider: &'static str,
        /// Why.
        reason: String,
    },
}

fn iso3(lang: &str) -> String {
    let base = lang
        .split(['-', '_'])
        .next()
        .unwrap_or(lang)
        .to_ascii_lowercase();
    match base.as_str() {
        "en" => "eng",
        "es" => "spa",
        "fr" => "fra",
        "ca" => "cat",
        "pt" => "por",
        "it" => "ita",
        "de" => "deu",
        "gl" => "glg",
        "eu" => "eus",
        "oc" => "oci",
        other => return other.to_string(),
    }
    .to_string()
}

/// A translation provider.
#[derive(Clone)]
pub enum Translator {
    /// Resident Apertium pipelines, one per pair used.
    Apertium(Apertium),
    /// LibreTranslate `/translate`.
    Libre {
        /// HTTP client.
        client: reqwest::Client,
        /// Base URL.
        url: String,
        /// Optional key.
        key: Option<String>,
    },
    /// Google Cloud Translation v2.
    Google {
        /// HTTP client.
        client: reqwest::Client,
        /// Endpoint.
        url: String,
        /// API key.
        key: String,
    },
}

impl Translator {
    /// Provider name for logs and /health.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Apertium(_) => "apertium",
            Self::Libre { .. } => "libretranslate",
            Self::Google { .. } => "google",
        }
    }

    /// Checks at `stream:init` that the pair can be served.
    pub fn check_pair(&self, src: &str, tgt: &str) -> Result<(), TranslateError> {
        match self {
            Self::Apertium(a) => a.check_pair(src, tgt),
            _ => Ok(()), // remote providers validate per request
        }
    }

    /// Translates `text` (empty stays empty).
    pub async fn translate(
        &self,
        text: &str,
        src: &str,
        tgt: &str,
    ) -> Result<String, TranslateError> {
        if text.trim().is_empty() {
            return Ok(String::new());
        }
        match self {
            Self::Apertium(a) => a.translate(text, src, tgt).await,
            Self::Libre { client, url, key } => {
                let mut body = serde_json::json!({"q": text, "source": short(src), "target": short(tgt), "format": "text"});
                if let Some(k) = key {
                    body["api_key"] = k.clone().into();
                }
                let fail = |reason: String| TranslateError::Failed {
                    provider: "libretranslate",
                    reason,
                };
                let resp = client
                    .post(format!("{}/translate", url.trim_end_matches('/')))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| fail(http_error(e)))?;
                let status = resp.status();
                let v: serde_json::Value = resp.json().await.map_err(|e| fail(http_error(e)))?;
                if !status.is_success() {
                    return Err(fail(format!("HTTP {status}: {v}")));
                }
                v["translatedText"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| fail(format!("no translatedText in {v}")))
            }
            Self::Google { client, url, key } => {
                let fail = |reason: String| TranslateError::Failed {
                    provider: "google",
                    reason,
                };
                // The key goes in a header (Google's documented alternative to `?key=`), so
                // it is in no URL: not in reqwest's error text, proxy logs or access logs.
                let mut key_header = reqwest::header::HeaderValue::from_str(key).map_err(|_| {
                    fail("GOOGLE_API_KEY holds characters an HTTP header cannot carry".into())
                })?;
                key_header.set_sensitive(true);
                let resp = client
                    .post(url.as_str())
                    .header(GOOGLE_API_KEY_HEADER, key_header)
                    .json(&serde_json::json!({"q": [text], "source": short(src), "target": short(tgt), "format": "text"}))
                    .send()
                    .await
                    .map_err(|e| fail(http_error(e)))?;
                let status = resp.status();
                let v: serde_json::Value = resp.json().await.map_err(|e| fail(http_error(e)))?;
                if !status.is_success() {
                    return Err(fail(format!("HTTP {status}: {}", v["error"]["message"])));
                }
                v["data"]["translations"][0]["translatedText"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| fail(format!("no translatedText in {v}")))
            }
        }
    }
}

/// Header that carries the Google Cloud API key.
pub const GOOGLE_API_KEY_HEADER: &str = "x-goog-api-key";

fn short(lang: &str) -> String {
    lang.split(['-', '_'])
        .next()
        .unwrap_or(lang)
        .to_ascii_lowercase()
}

struct Job {
    text: String,
    pair: String,
    reply: oneshot::Sender<Result<String, TranslateError>>,
}

/// Handle to the Apertium thread.
#[derive(Clone)]
pub struct Apertium {
    tx: mpsc::Sender<Job>,
    modes_dir: PathBuf,
}

impl Apertium {
    /// Starts the Apertium thread and warms the given pair (blocking: spawns processes and
    /// runs one sentence through, so a broken install fails at start).
    pub fn start(modes_dir: PathBuf, warm_pair: (&str, &str)) -> Result<Self, TranslateError> {
        let (tx, mut rx) = mpsc::channel::<Job>(64);
        let dir = modes_dir.clone();
        std::thread::Builder::new()
            .name("mt-apertium".into())
            .spawn(move || {
                let mut pipes: std::collections::HashMap<String, Pipeline> = Default::default();
                while let Some(job) = rx.blocking_recv() {
                    if job.reply.is_closed() {
                        continue;
                    }
                    let res = run_job(&dir, &mut pipes, &job.pair, &job.text);
                    let _ = job.reply.send(res);
                }
            })
            .map_err(|e| TranslateError::Failed {
                provider: "apertium",
                reason: e.to_string(),
            })?;
        let a = Self { tx, modes_dir };
        a.check_pair(warm_pair.0, warm_pair.1)?;
        let (reply, rx) = oneshot::channel();
        a.tx.blocking_send(Job {
            text: "Hello.".into(),
            pair: format!("{}-{}", iso3(warm_pair.0), iso3(warm_pair.1)),
            reply,
        })
        .map_err(|_| stopped())?;
        let out = rx.blocking_recv().map_err(|_| stopped())??;
        tracing::info!(warm_up = %out, "apertium pipeline ready");
        Ok(a)
    }

    /// Pairs with an installed mode file.
    pub fn available_pairs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.modes_dir)
            .map(|d| {
                d.filter_map(|e| {
                    let n = e.ok()?.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".mode").map(str::to_string)
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn check_pair(&self, src: &str, tgt: &str) -> Result<(), TranslateError> {
        let pair = format!("{}-{}", iso3(src), iso3(tgt));
        if self.modes_dir.join(format!("{pair}.mode")).is_file() {
            Ok(())
        } else {
            Err(TranslateError::Pair {
                src: src.into(),
                tgt: tgt.into(),
                provider: "apertium",
                available: self.available_pairs().join(", "),
            })
        }
    }

    async fn translate(&self, text: &str, src: &str, tgt: &str) -> Result<String, TranslateError> {
        self.check_pair(src, tgt)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                text: text.to_string(),
                pair: format!("{}-{}", iso3(src), iso3(tgt)),
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> TranslateError {
    TranslateError::Failed {
        provider: "apertium",
        reason: "engine thread stopped".into(),
    }
}

struct Pipeline {
    child: Child,
    stdin: ChildStdin,
    out: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
}

impl Pipeline {
    fn start(modes_dir: &std::path::Path, pair: &str) -> Result<Self, String> {
        let mode = modes_dir.join(format!("{pair}.mode"));
        let gen = Command::new("apertium-wblank-mode")
            .arg("-z")
            .arg(&mode)
            .output()
            .map_err(|e| format!("cannot run apertium-wblank-mode (install apertium): {e}"))?;
        if !gen.status.success() {
            return Err(format!(
                "apertium-wblank-mode -z {} failed: {}",
                mode.display(),
                String::from_utf8_lossy(&gen.stderr).trim()
            ));
        }
        // $1: generator flag (-n: no unknown-word marks, like `apertium -u`); $2: tagger
        // extra flag (none).
        let script = String::from_utf8_lossy(&gen.stdout)
            .replace("$1", "-n")
            .replace("$2", "");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script.trim())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0) // so a restart can kill every stage at once
            .spawn()
            .map_err(|e| format!("cannot start apertium pipeline: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("mt-apertium-read".into())
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                loop {
                    let mut buf = Vec::new();
                    match r.read_until(0, &mut buf) {
                        Ok(0) => break,
                        Ok(_) => {
                            if tx.send(Ok(buf)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink);
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            stdin,
            out: rx,
        })
    }

    fn translate(&mut self, text: &str) -> Result<String, String> {
        // Apertium's stream format reserves these characters; ASR text rarely has them.
        let clean: String = text
            .chars()
            .map(|c| {
                if "[]{}^$@<>\\/*#~|+\0\n\r".contains(c) {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        self.stdin
            .write_all(format!("{}[\n].[]\0", clean.trim()).as_bytes())
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("write to pipeline: {e}"))?;
        let raw = self
            .out
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "pipeline did not answer within 10 s".to_string())?
            .map_err(|e| format!("read from pipeline: {e}"))?;
        let s = String::from_utf8_lossy(&raw);
        let s = s.trim_end_matches('\0');
        let s = s.split("[\n]").next().unwrap_or(s);
        Ok(s.replace("[]", " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn kill(&mut self) {
        // Negative pid: the whole process group (every stage of the pipeline).
        // SAFETY: plain syscall with a pid we spawned.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run_job(
    dir: &std::path::Path,
    pipes: &mut std::collections::HashMap<String, Pipeline>,
    pair: &str,
    text: &str,
) -> Result<String, TranslateError> {
    let fail = |reason: String| TranslateError::Failed {
        provider: "apertium",
        reason,
    };
    // Two attempts: a pipeline that died since the last request is restarted once.
    let mut last = String::new();
    for attempt in 0..2 {
        if !pipes.contains_key(pair) {
            let p = Pipeline::start(dir, pair).map_err(fail)?;
            pipes.insert(pair.to_string(), p);
        }
        let p = pipes
            .get_mut(pair)
            .ok_or_else(|| fail("pipeline missing".into()))?;
        match p.translate(text) {
            Ok(s) => return Ok(s),
            Err(e) => {
                tracing::warn!(pair, attempt, error = %e, "apertium pipeline failed; restarting it");
                pipes.remove(pair); // Drop kills the process group
                last = e;
            }
        }
    }
    Err(fail(last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redactor;
    use std::sync::{Arc, Mutex};

    const MARKER: &str = "SECRET-MARKER-7f3a";

    /// A provider that fails: records each request's URI and headers, answers 500 with a
    /// body that echoes the key and a URL (the worst a provider can do).
    async fn failing_provider() -> (String, Arc<Mutex<Vec<String>>>) {
        use axum::http::{HeaderMap, StatusCode, Uri};
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s2 = seen.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let seen = s2.clone();
            async move {
                seen.lock().unwrap().push(format!(
                    "{uri} {headers:?} {:?}",
                    headers.get(GOOGLE_API_KEY_HEADER)
                ));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(serde_json::json!({"error": {"message": format!(
                        "API key {MARKER} rejected; see https://console.example/keys?key={MARKER}"
                    )}})),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    /// The error text of translating with Google at `url`, key [`MARKER`].
    async fn google_error(url: String) -> String {
        let t = Translator::Google {
            client: reqwest::Client::new(),
            url,
            key: MARKER.into(),
        };
        t.translate("Hello.", "en", "es")
            .await
            .unwrap_err()
            .to_string()
    }

    #[tokio::test]
    async fn google_key_travels_in_a_header_and_errors_name_no_url_or_key() {
        let (url, seen) = failing_provider().await;
        let e = google_error(format!("{url}/language/translate/v2")).await;
        let req = seen.lock().unwrap().join("\n");
        assert!(!req.contains("key="), "no key in the query: {req}");
        assert!(
            req.contains(&format!("Some({MARKER:?})")),
            "key header sent: {req}"
        );
        assert!(e.contains("HTTP 500"), "{e}");
        // What the provider echoed is removed before the text leaves the pipeline.
        let clean = Redactor::new([Some(MARKER)]).clean(&e);
        assert!(
            !clean.contains(MARKER) && !clean.contains("http"),
            "{clean}"
        );

        // Unreachable endpoint: reqwest's text would name the URL; ours does not.
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let e = google_error(format!("http://{dead_addr}/v2?key={MARKER}")).await;
        assert!(!e.contains(MARKER) && !e.contains("http://"), "{e}");
        assert!(!e.contains(&dead_addr.to_string()), "{e}");
        assert!(e.contains("google translation failed"), "{e}");
    }

    #[tokio::test]
    async fn libretranslate_errors_do_not_echo_the_key() {
        let (url, _seen) = failing_provider().await;
        let t = Translator::Libre {
            client: reqwest::Client::new(),
            url,
            key: Some(MARKER.into()),
        };
        let e = t
            .translate("Hello.", "en", "es")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("libretranslate") && e.contains("HTTP 500"),
            "{e}"
        );
        let clean = Redactor::new([Some(MARKER)]).clean(&e);
        assert!(!clean.contains(MARKER), "{clean}");
    }

    #[test]
    fn resident_apertium_translates_repeatedly_and_rejects_unknown_pairs() {
        let a = Apertium::start(APERTIUM_MODES_DIR.into(), ("en", "es"))
            .expect("apertium-eng-spa installed");
        let t = Translator::Apertium(a);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let out = t.translate("One, two, three.", "en", "es").await.unwrap();
            assert_eq!(out, "Uno, dos, tres.");
            // Reserved characters are neutralised, not passed to the stream format.
            let out = t
                .translate("I like the [big] house.", "en", "es")
                .await
                .unwrap();
            assert!(out.contains("casa"), "{out}");
            assert!(!out.contains('['), "{out}");
            assert_eq!(t.translate("  ", "en", "es").await.unwrap(), "");
            // Many requests through the one resident pipeline stay in step.
            for i in 0..20 {
                let out = t
                    .translate(&format!("{i} cats."), "en", "es")
                    .await
                    .unwrap();
                assert!(out.contains(&i.to_string()), "request {i}: {out}");
            }
        });
        let e = t.check_pair("en", "xx").unwrap_err().to_string();
        assert!(e.contains("eng-spa"), "lists available pairs: {e}");
    }
}
