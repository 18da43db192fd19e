//! Scrubbing of text that leaves the process (fragment errors, logs): configured secrets
//! and URLs are replaced before a provider's error message reaches a client, the
//! media-service's reports or the log.
//!
//! Provider errors are already built without URLs (`reqwest::Error::without_url`) and keys
//! travel in headers or bodies, never in URLs; this is the second line: a provider that
//! echoes the key or a URL in its error body, or an error type that prints its URL, still
//! leaks nothing.

use crate::config::Config;
use std::sync::Arc;

/// What replaces a secret value.
pub const SECRET_MARK: &str = "[redacted]";
/// What replaces a URL.
pub const URL_MARK: &str = "[url]";
/// Secrets shorter than this are not searched for (they would match ordinary words); a
/// real key or token is far longer.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces configured secret values and every `http://` / `https://` URL in a text.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<[String]>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for these secret values (None, empty and very short ones are skipped).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = Option<S>>,
        S: AsRef<str>,
    {
        let mut v: Vec<String> = secrets
            .into_iter()
            .flatten()
            .map(|s| s.as_ref().to_string())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        Self { secrets: v.into() }
    }

    /// Every secret of the configuration: the provider keys and the handshake token.
    pub fn from_config(cfg: &Config) -> Self {
        Self::new([
            cfg.google_api_key.as_deref(),
            cfg.libretranslate_api_key.as_deref(),
            cfg.tts_api_key.as_deref(),
            cfg.sts_auth_token.as_deref(),
        ])
    }

    /// `text` without secrets and URLs.
    pub fn clean(&self, text: &str) -> String {
        // URLs first (a secret inside one goes with it), then secrets anywhere else.
        let mut out = strip_urls(text);
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), SECRET_MARK);
            }
        }
        out
    }
}

/// Replaces each `http://...` or `https://...` (scheme matched in any case, up to the next
/// whitespace, quote or bracket) with [`URL_MARK`].
pub fn strip_urls(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &lower[i..];
        let scheme = if rest.starts_with("https://") {
            8
        } else if rest.starts_with("http://") {
            7
        } else {
            0
        };
        if scheme > 0 {
            let end = text[i + scheme..]
                .find(|c: char| c.is_whitespace() || "\"'`<>()[]{}".contains(c))
                .map_or(text.len(), |n| i + scheme + n);
            out.push_str(URL_MARK);
            i = end;
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_urls_are_replaced() {
        let r = Redactor::new([Some("SECRET-MARKER-7f3a"), None, Some(""), Some("abc")]);
        let msg = "error sending request for url (https://translation.googleapis.com/language/translate/v2?key=SECRET-MARKER-7f3a): connection refused; body: {\"error\": \"API key SECRET-MARKER-7f3a invalid\"} see HTTP://Example.com/x";
        let out = r.clean(msg);
        assert!(!out.contains("SECRET-MARKER-7f3a"), "{out}");
        assert!(!out.to_ascii_lowercase().contains("http"), "{out}");
        assert!(!out.contains("googleapis"), "{out}");
        assert!(out.contains("connection refused"), "{out}");
        assert!(out.contains(SECRET_MARK) && out.contains(URL_MARK), "{out}");
        assert!(!out.contains(&format!("{URL_MARK}{SECRET_MARK}")), "{out}");
        // Short "secrets" are not searched for (they would garble ordinary text).
        assert!(r.clean("abcdef").contains("abc"));
    }

    #[test]
    fn text_without_secrets_or_urls_is_unchanged() {
        let r = Redactor::new([Some("k3y-value")]);
        let s = "libretranslate translation failed: HTTP 500 Internal Server Error: «ñ» 2 ms";
        assert_eq!(r.clean(s), s);
        assert_eq!(strip_urls("http://"), URL_MARK);
        assert_eq!(strip_urls("a (http://h/p) b"), format!("a ({URL_MARK}) b"));
    }

    #[test]
    fn a_secret_inside_another_is_replaced_whole() {
        let r = Redactor::new([Some("token"), Some("token-long-123")]);
        assert_eq!(r.clean("x token-long-123 y"), format!("x {SECRET_MARK} y"));
    }
}
