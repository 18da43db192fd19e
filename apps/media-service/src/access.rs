//! Who may change what the service runs: the access mode of the control API's mutating
//! requests (`POST /v1/streams`, `DELETE /v1/streams/{name}`), decided once at start from
//! MEDIA_SERVICE_TOKEN, CONTROL_API and MEDIA_SERVICE_HOST. Read-only requests (`GET`) are
//! never restricted.

use std::fmt;
use std::net::IpAddr;

use subtle::ConstantTimeEq;

/// Shortest accepted MEDIA_SERVICE_TOKEN.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest accepted MEDIA_SERVICE_TOKEN (it travels in a header).
pub const MAX_TOKEN_LEN: usize = 4096;

/// CONTROL_API: how the access mode is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlApiMode {
    /// A token when MEDIA_SERVICE_TOKEN is set; else open on a loopback bind; else closed.
    #[default]
    Auto,
    /// No token, whatever the bind address (trusted networks only).
    Open,
    /// Every mutating request refused; streams come from discovery only.
    Closed,
}

impl ControlApiMode {
    /// Parses a CONTROL_API value.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err("expected auto (a token when MEDIA_SERVICE_TOKEN is set, else changes only on a loopback bind), open (no token: trusted networks only) or closed (no changes through the API)".into()),
        }
    }
}

/// MEDIA_SERVICE_TOKEN. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Parses a token: 16 to 4096 characters of visible ASCII (it is sent in a header).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err(format!(
                "set but empty: unset it (no token) or set {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters of visible ASCII, e.g. the output of `openssl rand -hex 32`"
            ));
        }
        let visible = t.bytes().all(|b| b.is_ascii_graphic());
        if visible && (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&t.len()) {
            Ok(Self(t.to_string()))
        } else {
            Err(format!(
                "expected {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters of visible ASCII without spaces, e.g. the output of `openssl rand -hex 32`"
            ))
        }
    }

    /// Constant-time comparison with a presented token (the length is not hidden).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<hidden>)")
    }
}

/// Why the control API refuses every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedReason {
    /// CONTROL_API=closed.
    Configured,
    /// CONTROL_API=auto on a non-loopback bind without MEDIA_SERVICE_TOKEN.
    NoToken {
        /// MEDIA_SERVICE_HOST.
        host: String,
    },
}

/// The access mode of the mutating requests, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAccess {
    /// `Authorization: Bearer <MEDIA_SERVICE_TOKEN>` required.
    Token(BearerToken),
    /// No token: the service binds a loopback address, so only local processes reach it.
    LoopbackOnly {
        /// MEDIA_SERVICE_HOST.
        host: String,
    },
    /// No token on a non-loopback bind, because CONTROL_API=open says the network is trusted.
    Open,
    /// Every mutating request refused (403).
    Closed(ClosedReason),
}

/// A mutating request the access mode refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The API is closed (403).
    #[error("the control API accepts no changes: MEDIA_SERVICE_HOST={host} is not a loopback address and MEDIA_SERVICE_TOKEN is not set. Set MEDIA_SERVICE_TOKEN and send 'Authorization: Bearer <token>', bind MEDIA_SERVICE_HOST=127.0.0.1, or set CONTROL_API=open on a trusted network (GET requests and discovery work meanwhile)")]
    ClosedNoToken {
        /// MEDIA_SERVICE_HOST.
        host: String,
    },
    /// CONTROL_API=closed (403).
    #[error("the control API accepts no changes: CONTROL_API=closed (streams come from discovery only; GET requests work). Unset CONTROL_API to use MEDIA_SERVICE_TOKEN or a loopback bind")]
    ClosedConfigured,
    /// No Authorization header (401).
    #[error("this request needs the header 'Authorization: Bearer <token>' with the token of MEDIA_SERVICE_TOKEN")]
    MissingToken,
    /// An Authorization header of another scheme (401).
    #[error(
        "the Authorization header must be 'Bearer <token>' with the token of MEDIA_SERVICE_TOKEN"
    )]
    NotBearer,
    /// A bearer token that is not MEDIA_SERVICE_TOKEN (401).
    #[error("the bearer token does not match MEDIA_SERVICE_TOKEN")]
    WrongToken,
}

impl AccessError {
    /// 403 for a closed API (no credentials help), 401 for a missing or wrong token.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::ClosedNoToken { .. } | Self::ClosedConfigured)
    }
}

/// Contradictory access settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessConfigError {
    /// A token and CONTROL_API=open or closed.
    #[error("MEDIA_SERVICE_TOKEN is set and CONTROL_API={mode}: choose one (unset CONTROL_API or set it to auto to require the token)")]
    TokenAndMode {
        /// `open` or `closed`.
        mode: &'static str,
    },
}

/// MEDIA_SERVICE_HOST is a loopback address: 127.0.0.0/8, ::1 (bracketed or not) or
/// `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl ControlAccess {
    /// The mode for CONTROL_API `mode`, MEDIA_SERVICE_TOKEN `token` and MEDIA_SERVICE_HOST
    /// `host`.
    pub fn decide(
        mode: ControlApiMode,
        token: Option<BearerToken>,
        host: &str,
    ) -> Result<Self, AccessConfigError> {
        match (mode, token) {
            (ControlApiMode::Open, Some(_)) => {
                Err(AccessConfigError::TokenAndMode { mode: "open" })
            }
            (ControlApiMode::Closed, Some(_)) => {
                Err(AccessConfigError::TokenAndMode { mode: "closed" })
            }
            (ControlApiMode::Auto, Some(t)) => Ok(Self::Token(t)),
            (ControlApiMode::Open, None) => Ok(Self::Open),
            (ControlApiMode::Closed, None) => Ok(Self::Closed(ClosedReason::Configured)),
            (ControlApiMode::Auto, None) if is_loopback_host(host) => Ok(Self::LoopbackOnly {
                host: host.to_string(),
            }),
            (ControlApiMode::Auto, None) => Ok(Self::Closed(ClosedReason::NoToken {
                host: host.to_string(),
            })),
        }
    }

    /// Checks a mutating request's `Authorization` header value.
    pub fn authorize(&self, authorization: Option<&[u8]>) -> Result<(), AccessError> {
        match self {
            Self::LoopbackOnly { .. } | Self::Open => Ok(()),
            Self::Closed(ClosedReason::Configured) => Err(AccessError::ClosedConfigured),
            Self::Closed(ClosedReason::NoToken { host }) => {
                Err(AccessError::ClosedNoToken { host: host.clone() })
            }
            Self::Token(expected) => {
                let value = authorization.ok_or(AccessError::MissingToken)?;
                let presented = bearer_credentials(value).ok_or(AccessError::NotBearer)?;
                if expected.matches(presented) {
                    Ok(())
                } else {
                    Err(AccessError::WrongToken)
                }
            }
        }
    }

    /// One line for the start-up log (never the token).
    pub fn describe(&self) -> String {
        match self {
            Self::Token(_) => "token: POST/DELETE need 'Authorization: Bearer <MEDIA_SERVICE_TOKEN>'".into(),
            Self::LoopbackOnly { host } => format!(
                "loopback-only: MEDIA_SERVICE_HOST={host} is loopback, so POST/DELETE need no token"
            ),
            Self::Open => "open: CONTROL_API=open, anyone who reaches the port may start and stop streams".into(),
            Self::Closed(ClosedReason::Configured) => {
                "closed: CONTROL_API=closed, POST/DELETE are refused (403); GET and discovery work".into()
            }
            Self::Closed(ClosedReason::NoToken { host }) => format!(
                "closed: MEDIA_SERVICE_HOST={host} is not loopback and MEDIA_SERVICE_TOKEN is not set, so POST/DELETE are refused (403); GET and discovery work"
            ),
        }
    }
}

/// The credentials of `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1), trimmed.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = value[SCHEME.len()..].trim_ascii();
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret-token-0123456789";

    fn token() -> BearerToken {
        BearerToken::parse(SECRET).unwrap()
    }

    #[test]
    fn tokens_are_long_visible_ascii_and_never_shown() {
        assert!(BearerToken::parse("short").is_err());
        assert!(BearerToken::parse("has a space in it, long enough").is_err());
        assert!(BearerToken::parse("")
            .unwrap_err()
            .starts_with("set but empty"));
        assert!(BearerToken::parse("tökentökentökentöken").is_err());
        let t = token();
        assert!(!format!("{t:?}").contains(SECRET));
        assert!(t.matches(SECRET.as_bytes()));
        assert!(!t.matches(b"s3cret-token-0123456788"));
        assert!(!t.matches(b"s3cret-token-012345678"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "example.com",
            "128.0.0.1",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn modes_follow_token_bind_and_control_api() {
        use ControlApiMode::*;
        assert_eq!(
            ControlAccess::decide(Auto, Some(token()), "0.0.0.0"),
            Ok(ControlAccess::Token(token()))
        );
        assert_eq!(
            ControlAccess::decide(Auto, None, "127.0.0.1"),
            Ok(ControlAccess::LoopbackOnly {
                host: "127.0.0.1".into()
            })
        );
        assert_eq!(
            ControlAccess::decide(Auto, None, "0.0.0.0"),
            Ok(ControlAccess::Closed(ClosedReason::NoToken {
                host: "0.0.0.0".into()
            }))
        );
        assert_eq!(
            ControlAccess::decide(Open, None, "0.0.0.0"),
            Ok(ControlAccess::Open)
        );
        assert_eq!(
            ControlAccess::decide(Closed, None, "127.0.0.1"),
            Ok(ControlAccess::Closed(ClosedReason::Configured))
        );
        let e = ControlAccess::decide(Open, Some(token()), "0.0.0.0").unwrap_err();
        assert!(e.to_string().contains("CONTROL_API=open"), "{e}");
        assert!(ControlAccess::decide(Closed, Some(token()), "0.0.0.0").is_err());
        assert!(!ControlAccess::Token(token()).describe().contains(SECRET));
    }

    #[test]
    fn token_mode_checks_the_bearer_header() {
        let a = ControlAccess::Token(token());
        assert_eq!(a.authorize(None), Err(AccessError::MissingToken));
        assert_eq!(
            a.authorize(Some(format!("Basic {SECRET}").as_bytes())),
            Err(AccessError::NotBearer)
        );
        assert_eq!(a.authorize(Some(b"Bearer ")), Err(AccessError::NotBearer));
        assert_eq!(
            a.authorize(Some(b"Bearer wrong-token-0123456789")),
            Err(AccessError::WrongToken)
        );
        assert_eq!(
            a.authorize(Some(format!("Bearer {SECRET}").as_bytes())),
            Ok(())
        );
        assert_eq!(
            a.authorize(Some(format!("bearer  {SECRET} ").as_bytes())),
            Ok(())
        );
        assert!(!AccessError::WrongToken.is_forbidden());
    }

    #[test]
    fn closed_refuses_and_names_the_settings() {
        let a = ControlAccess::decide(ControlApiMode::Auto, None, "0.0.0.0").unwrap();
        let e = a
            .authorize(Some(format!("Bearer {SECRET}").as_bytes()))
            .unwrap_err();
        assert!(e.is_forbidden());
        let m = e.to_string();
        assert!(
            m.contains("MEDIA_SERVICE_TOKEN") && m.contains("CONTROL_API=open"),
            "{m}"
        );
        let e = ControlAccess::Closed(ClosedReason::Configured)
            .authorize(None)
            .unwrap_err();
        assert!(e.is_forbidden() && e.to_string().contains("CONTROL_API=closed"));
        assert_eq!(ControlAccess::Open.authorize(None), Ok(()));
        assert_eq!(
            ControlAccess::LoopbackOnly {
                host: "127.0.0.1".into()
            }
            .authorize(None),
            Ok(())
        );
    }
}
