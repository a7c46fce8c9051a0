//! Merges the broker settings from their four sources, later ones winning:
//! built-in defaults < `--config FILE` (TOML) < `FJORD_*` environment variables < flags.
//!
//! Keys are Kafka's names (`num.partitions`, `message.max.bytes`, ...). In TOML they can be
//! written quoted (`"num.partitions" = 3`) or as nested tables (`num.partitions = 3`, which TOML
//! reads as table `num`, key `partitions`); both flatten to the same dotted key. The environment
//! variable of a key is `FJORD_` plus the key in upper case with dots as underscores
//! (`FJORD_NUM_PARTITIONS`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use fjord_broker::config::{canonical_setting, SETTINGS};

/// The environment variable that sets `key`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "FJORD_{}",
        key.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// Reads a TOML config file into dotted keys.
pub fn read_config_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    let mut out = BTreeMap::new();
    flatten("", &toml::Value::Table(table), &mut out)
        .with_context(|| format!("in config file {}", path.display()))?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let text = match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, inner, out)?;
            }
            return Ok(());
        }
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => {
            bail!("{prefix}: arrays are not supported, use a comma-separated string")
        }
    };
    let (key, text) = canonical_setting(prefix, &text);
    out.insert(key, text);
    Ok(())
}

/// Settings from `FJORD_*` variables, for every known key.
pub fn from_environment(lookup: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    SETTINGS
        .iter()
        .filter_map(|spec| {
            lookup(&env_var_name(spec.key)).map(|value| (spec.key.to_string(), value))
        })
        .collect()
}

/// Parses a `KEY=VALUE` flag.
pub fn parse_assignment(text: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = text
        .split_once('=')
        .with_context(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok(canonical_setting(key.trim(), value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_nested_and_quoted_keys_flatten_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjord.toml");
        std::fs::write(
            &path,
            "\"num.partitions\" = 3\nmessage.max.bytes = 2000\nlisteners = \"PLAINTEXT://0.0.0.0:9093\"\n[auto.create.topics]\nenable = false\n",
        )
        .unwrap();
        let settings = read_config_file(&path).unwrap();
        assert_eq!(settings["num.partitions"], "3");
        assert_eq!(settings["message.max.bytes"], "2000");
        assert_eq!(settings["listen"], "0.0.0.0:9093");
        assert_eq!(settings["auto.create.topics.enable"], "false");
    }

    #[test]
    fn environment_names_follow_the_keys() {
        assert_eq!(env_var_name("num.partitions"), "FJORD_NUM_PARTITIONS");
        let settings =
            from_environment(|name| (name == "FJORD_DATA_DIR").then(|| "/x".to_string()));
        assert_eq!(settings.len(), 1);
        assert_eq!(settings["data.dir"], "/x");
    }

    #[test]
    fn assignments_need_an_equals_sign() {
        assert!(parse_assignment("num.partitions").is_err());
        assert_eq!(
            parse_assignment("log.dirs=/d").unwrap(),
            ("data.dir".to_string(), "/d".to_string())
        );
    }
}
