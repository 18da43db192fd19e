//! The environment contracts (specs/019-.../contracts/*.json), the services'
//! `--print-env-contract` output, the compose files and the `.env.e2e.example` files,
//! read so that a test can check they all agree.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// One variable of a contract: `{name, default, meaning}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Default value as text (`null`/absent = no default).
    #[serde(default, deserialize_with = "default_as_text")]
    pub default: Option<String>,
    /// What it does.
    #[serde(default)]
    pub meaning: String,
}

fn default_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// A contracts JSON file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContractFile {
    /// Service name.
    pub service: String,
    /// Variables read by the service's config parser.
    pub variables: Vec<EnvVar>,
    /// Variables only the compose file reads (interpolation: host paths, image tags).
    #[serde(default)]
    pub compose_variables: Vec<EnvVar>,
}

/// Errors reading contracts and compose files.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("{path}: {message}")]
    Invalid {
        /// The file (or command).
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn read(path: &Path) -> Result<String, ContractError> {
    std::fs::read_to_string(path).map_err(|source| ContractError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> ContractError {
    ContractError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl ContractFile {
    /// Reads and checks a contracts file (names unique and upper-case, meanings present).
    pub fn load(path: &Path) -> Result<Self, ContractError> {
        let file: ContractFile =
            serde_json::from_str(&read(path)?).map_err(|e| invalid(path, e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for v in file.variables.iter().chain(&file.compose_variables) {
            if !is_env_name(&v.name) {
                return Err(invalid(
                    path,
                    format!("{:?} is not an environment variable name", v.name),
                ));
            }
            if !seen.insert(v.name.clone()) {
                return Err(invalid(path, format!("{} is listed twice", v.name)));
            }
            if v.meaning.trim().is_empty() {
                return Err(invalid(path, format!("{} has no meaning", v.name)));
            }
        }
        Ok(file)
    }

    /// Variables by name.
    pub fn by_name(&self) -> BTreeMap<&str, &EnvVar> {
        self.variables
            .iter()
            .map(|v| (v.name.as_str(), v))
            .collect()
    }
}

/// True for `UPPER_SNAKE` names.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Parses a service's `--print-env-contract` output.
pub fn parse_printed_contract(text: &str) -> Result<Vec<EnvVar>, String> {
    serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "--print-env-contract did not print a JSON array of {{name, default, meaning}}: {e}"
        )
    })
}

/// The `environment:` of `service` in a compose file: name -> value as written
/// (`None` for pass-through entries like `- STS_MODE`).
pub fn compose_environment(
    path: &Path,
    service: &str,
) -> Result<BTreeMap<String, Option<String>>, ContractError> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&read(path)?).map_err(|e| invalid(path, e.to_string()))?;
    let svc = doc
        .get("services")
        .and_then(|s| s.get(service))
        .ok_or_else(|| invalid(path, format!("no service {service:?}")))?;
    let mut env = BTreeMap::new();
    match svc.get("environment") {
        None => {}
        Some(serde_yaml::Value::Mapping(map)) => {
            for (k, v) in map {
                let k = k
                    .as_str()
                    .ok_or_else(|| invalid(path, "non-string environment key"))?;
                let v = match v {
                    serde_yaml::Value::Null => None,
                    serde_yaml::Value::String(s) => Some(s.clone()),
                    other => Some(
                        serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    ),
                };
                env.insert(k.to_string(), v);
            }
        }
        Some(serde_yaml::Value::Sequence(items)) => {
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| invalid(path, "non-string environment entry"))?;
                match s.split_once('=') {
                    Some((k, v)) => env.insert(k.to_string(), Some(v.to_string())),
                    None => env.insert(s.to_string(), None),
                };
            }
        }
        Some(_) => {
            return Err(invalid(
                path,
                format!("{service}.environment is neither a map nor a list"),
            ))
        }
    }
    Ok(env)
}

/// Names of the services in a compose file.
pub fn compose_services(path: &Path) -> Result<Vec<String>, ContractError> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&read(path)?).map_err(|e| invalid(path, e.to_string()))?;
    Ok(doc
        .get("services")
        .and_then(|s| s.as_mapping())
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// Every `${NAME...}` interpolation in a compose file.
pub fn compose_interpolations(path: &Path) -> Result<Vec<String>, ContractError> {
    let text = read(path)?;
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 && !names.iter().any(|n| n == &rest[..end]) {
            names.push(rest[..end].to_string());
        }
    }
    Ok(names)
}

/// `KEY=VALUE` lines of an env file (comments and blanks skipped).
pub fn dotenv(path: &Path) -> Result<Vec<(String, String)>, ContractError> {
    let mut out = Vec::new();
    for (i, line) in read(path)?.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| invalid(path, format!("line {}: not KEY=VALUE: {line:?}", i + 1)))?;
        if !is_env_name(k.trim()) {
            return Err(invalid(path, format!("line {}: bad name {k:?}", i + 1)));
        }
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Validates a compose file without an engine: `docker-compose -f F config -q` (v1, as
/// Debian ships it) or else `docker compose -f F config -q`. `Ok(None)` when neither tool
/// exists; `Ok(Some(tool))` when valid.
pub fn validate_compose_file(path: &Path) -> Result<Option<&'static str>, ContractError> {
    let attempts: [(&'static str, &str, &[&str]); 2] = [
        ("docker-compose", "docker-compose", &[]),
        ("docker compose", "docker", &["compose"]),
    ];
    for (label, program, pre) in attempts {
        let out = Command::new(program)
            .args(pre)
            .arg("-f")
            .arg(path)
            .args(["config", "-q"])
            .output();
        match out {
            Err(_) => continue,
            Ok(o) if o.status.success() => return Ok(Some(label)),
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
                // `docker` without the compose plugin says so; try nothing else then.
                if program == "docker" && stderr.contains("is not a docker command") {
                    return Ok(None);
                }
                return Err(invalid(path, format!("{label} config -q failed: {stderr}")));
            }
        }
    }
    Ok(None)
}

/// A Compose duration (`2s`, `1m30s`, `500ms`, `1h`) in milliseconds; `None` for anything
/// else (a bare number, an unknown unit, a negative or empty value).
pub fn compose_duration_ms(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0u64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per_unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(per_unit)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_durations_read_and_reject_garbage() {
        assert_eq!(compose_duration_ms("2s"), Some(2_000));
        assert_eq!(compose_duration_ms("10s"), Some(10_000));
        assert_eq!(compose_duration_ms("1m30s"), Some(90_000));
        assert_eq!(compose_duration_ms("500ms"), Some(500));
        assert_eq!(compose_duration_ms("1h"), Some(3_600_000));
        for bad in ["", "10", "s", "-2s", "2 s", "2d", "1.5s"] {
            assert_eq!(compose_duration_ms(bad), None, "{bad:?}");
        }
    }

    fn tmp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("e2e-contract-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn contract_files_parse_and_are_checked() {
        let p = tmp(
            "ok.json",
            r#"{"service": "s", "variables": [{"name": "A_B", "default": 3, "meaning": "x"}, {"name": "C", "default": null, "meaning": "y"}],
               "compose_variables": [{"name": "E2E_X", "default": "", "meaning": "z"}]}"#,
        );
        let c = ContractFile::load(&p).unwrap();
        assert_eq!(c.by_name()["A_B"].default.as_deref(), Some("3"));
        assert_eq!(c.by_name()["C"].default, None);
        let dup = tmp(
            "dup.json",
            r#"{"service": "s", "variables": [{"name": "A", "meaning": "x"}, {"name": "A", "meaning": "x"}]}"#,
        );
        assert!(ContractFile::load(&dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let bad = tmp(
            "bad.json",
            r#"{"service": "s", "variables": [{"name": "lower", "meaning": "x"}]}"#,
        );
        assert!(ContractFile::load(&bad).is_err());
        let nomeaning = tmp(
            "nm.json",
            r#"{"service": "s", "variables": [{"name": "A", "meaning": " "}]}"#,
        );
        assert!(ContractFile::load(&nomeaning).is_err());
    }

    #[test]
    fn printed_contract_parses() {
        let v = parse_printed_contract(
            r#" [{"name": "STS_PORT", "default": "3000", "meaning": "port"}] "#,
        )
        .unwrap();
        assert_eq!(v[0].name, "STS_PORT");
        assert!(parse_printed_contract("usage: ...").is_err());
    }

    #[test]
    fn compose_environment_map_and_list() {
        let p = tmp(
            "c.yml",
            "services:\n  a:\n    environment:\n      X: \"1\"\n      Y: ${Y:-2}\n      Z:\n  b:\n    environment:\n      - P=1\n      - Q\n",
        );
        let a = compose_environment(&p, "a").unwrap();
        assert_eq!(a["X"].as_deref(), Some("1"));
        assert_eq!(a["Y"].as_deref(), Some("${Y:-2}"));
        assert_eq!(a["Z"], None);
        let b = compose_environment(&p, "b").unwrap();
        assert_eq!(b["P"].as_deref(), Some("1"));
        assert_eq!(b["Q"], None);
        assert!(compose_environment(&p, "c").is_err());
        assert_eq!(compose_services(&p).unwrap(), vec!["a", "b"]);
        assert_eq!(compose_interpolations(&p).unwrap(), vec!["Y"]);
    }

    #[test]
    fn dotenv_reads_pairs() {
        let p = tmp("e.env", "# c\n\nA=1\nB = two\n");
        assert_eq!(
            dotenv(&p).unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "two".into())]
        );
        let bad = tmp("bad.env", "nonsense\n");
        assert!(dotenv(&bad).is_err());
    }
}
