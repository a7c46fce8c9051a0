//! Merges the broker settings from their four sources, later ones winning:
//! built-in defaults < `--config FILE` (TOML) < `FJORD_*` environment variables < flags.
//!
//! Keys are Kafka's names (`num.partitions`, `message.max.bytes`, ...). In TOML they can be
//! written quoted (`"num.partitions" = 3`) or as nested tables (`num.partitions = 3`, which TOML
//! reads as table `num`, key `partitions`); both flatten to the same dotted key. The environment
//! variable of a key is `FJORD_` plus the key in upper case with dots as underscores
//! (`FJORD_NUM_PARTITIONS`).
//!
//! Every merged value remembers its [`Origin`], so `fjord serve --print-config` can say where a
//! value came from and a start-up error can say where a bad key or value was written.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use fjord_broker::config::{canonical_setting, ConfigSource, SETTINGS};
use fjord_broker::{BrokerConfig, BrokerError};

use crate::output::{print_json, print_table, OutputFormat};

/// `FJORD_*` variables that are not settings: the CLI's own (`--config`, client flags) and
/// those of the test and benchmark scripts. They are never reported as misspelled settings.
pub const NON_SETTING_ENV_VARS: &[&str] = &[
    "FJORD_BOOTSTRAP",
    "FJORD_OUTPUT",
    "FJORD_CONFIG",
    "FJORD_BIN",
    "FJORD_VENV",
    "FJORD_TXN_HISTORY_SEED",
    "FJORD_BENCH_BOOTSTRAP",
    "FJORD_BENCH_TMP",
    "FJORD_JS_PREFIX",
    "FJORD_FUZZ_SHOW_CAUGHT",
    crate::test_hooks::TEST_HOOKS_ENV,
    crate::test_hooks::CLOCK_OFFSET_FILE_ENV,
];

/// Where a setting's value was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Not given anywhere: the built-in default.
    Default,
    /// A key in the `--config` TOML file.
    ConfigFile(PathBuf),
    /// A `FJORD_*` environment variable (its name).
    Env(String),
    /// `--set KEY=VALUE`.
    SetFlag,
    /// A dedicated flag such as `--listen`.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::ConfigFile(path) => write!(f, "config file {}", path.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::SetFlag => write!(f, "flag --set"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The merged settings (canonical keys) and where each value came from. Later inserts win, so
/// insert in precedence order: file, environment, `--set`, dedicated flags.
#[derive(Debug, Default)]
pub struct MergedSettings {
    pub values: BTreeMap<String, String>,
    pub origins: BTreeMap<String, Origin>,
}

impl MergedSettings {
    pub fn insert(&mut self, key: String, value: String, origin: Origin) {
        self.origins.insert(key.clone(), origin);
        self.values.insert(key, value);
    }

    pub fn extend(&mut self, values: BTreeMap<String, String>, origin: impl Fn(&str) -> Origin) {
        for (key, value) in values {
            let from = origin(&key);
            self.insert(key, value, from);
        }
    }

    /// Where `key`'s value came from (`Default` if it was not given).
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Fails on the first key that is no setting, naming where it was given and the closest
    /// setting if one is near.
    pub fn check_known_keys(&self) -> anyhow::Result<()> {
        let unknown = self
            .values
            .keys()
            .find(|key| !fjord_broker::config::is_known_setting(key));
        match unknown {
            Some(key) => Err(anyhow!(
                "unknown setting `{key}` (from {}){}",
                self.origin(key),
                did_you_mean(key)
            )),
            None => Ok(()),
        }
    }

    /// Adds where the value came from to a validation error of [`BrokerConfig::from_settings`].
    ///
    /// [`BrokerConfig::from_settings`]: fjord_broker::BrokerConfig::from_settings
    pub fn explain(&self, error: BrokerError) -> anyhow::Error {
        match error {
            BrokerError::InvalidConfig { key, value, reason } => anyhow!(
                "invalid value {value:?} for setting `{key}` (from {}): {reason}",
                self.origin(&key)
            ),
            BrokerError::UnknownConfig { key } => anyhow!(
                "unknown setting `{key}` (from {}){}",
                self.origin(&key),
                did_you_mean(&key)
            ),
            other => anyhow::Error::new(other),
        }
    }
}

/// `; did you mean `KEY`?` for the setting closest to `key`, or "" when none is close.
pub fn did_you_mean(key: &str) -> String {
    closest_setting(key).map_or(String::new(), |found| format!("; did you mean `{found}`?"))
}

/// The setting nearest to `key` by edit distance, if near enough to be a typo of it: at most
/// a third of the key's length, and at least 1 and at most 4 edits.
pub fn closest_setting(key: &str) -> Option<&'static str> {
    let limit = (key.chars().count() / 3).clamp(1, 4);
    SETTINGS
        .iter()
        .map(|spec| (edit_distance(key, spec.key), spec.key))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, found)| found)
}

/// Levenshtein distance of two short strings (setting names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// What to do about `FJORD_*` variables that set nothing: an error for one that looks like a
/// misspelled setting (its key is close to a setting's), and the names of the others, which
/// the caller logs as ignored. Settings' own variables and [`NON_SETTING_ENV_VARS`] are fine.
pub fn check_environment_names(
    names: impl IntoIterator<Item = String>,
) -> anyhow::Result<Vec<String>> {
    let mut ignored = Vec::new();
    for name in names {
        let Some(rest) = name.strip_prefix("FJORD_") else {
            continue;
        };
        let is_setting = SETTINGS.iter().any(|spec| env_var_name(spec.key) == name);
        if is_setting || NON_SETTING_ENV_VARS.contains(&name.as_str()) {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace('_', ".");
        if let Some(found) = closest_setting(&key) {
            bail!(
                "environment variable {name} sets no setting; did you mean {} (`{found}`)?",
                env_var_name(found)
            );
        }
        ignored.push(name);
    }
    Ok(ignored)
}

/// The environment variable that sets `key`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "FJORD_{}",
        key.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// How `fjord serve --print-config` names where an effective value comes from.
fn source_label(merged: &MergedSettings, key: &str, source: ConfigSource) -> String {
    match source {
        ConfigSource::DynamicBroker => "dynamic broker config".to_string(),
        ConfigSource::DynamicDefaultBroker => "dynamic default broker config".to_string(),
        ConfigSource::StaticBroker => merged.origin(key).to_string(),
        ConfigSource::Default | ConfigSource::DynamicTopic => Origin::Default.to_string(),
    }
}

/// The dynamic broker configs committed in the metadata log of `config.data_dir` (read
/// without opening it: the node may be running), or those of a single-node data dir that was
/// not migrated yet (`broker-configs.json`).
fn stored_dynamic_broker_configs(
    config: &BrokerConfig,
) -> anyhow::Result<fjord_storage::DynamicBrokerConfigs> {
    let dir = config.data_dir.join(fjord_storage::METADATA_LOG_DIR_NAME);
    let Some(log) =
        fjord_storage::read_metadata_log(&dir).context("cannot read the metadata log")?
    else {
        return fjord_storage::read_dynamic_broker_configs(&config.data_dir)
            .context("cannot read the dynamic broker configs");
    };
    let mut delta = fjord_metadata::MetadataDelta::new(std::sync::Arc::new(
        fjord_metadata::MetadataImage::empty(),
    ));
    let mut payloads: Vec<&[u8]> = Vec::new();
    if let Some(snapshot) = &log.snapshot {
        payloads.push(&snapshot.data);
    }
    payloads.extend(
        log.entries
            .iter()
            .filter(|entry| entry.index <= log.hard_state.commit && !entry.payload.is_empty())
            .map(|entry| &entry.payload[..]),
    );
    for payload in payloads {
        let records = fjord_metadata::decode_batch(payload).context("metadata log entry")?;
        for record in &records {
            delta.replay(record).context("metadata log entry")?;
        }
    }
    let image = delta.apply(0, 0);
    let configs = |name: String| {
        image
            .config(&fjord_metadata::ConfigResource::broker(name))
            .cloned()
            .unwrap_or_default()
    };
    Ok(fjord_storage::DynamicBrokerConfigs {
        cluster_default: configs(String::new()),
        broker: configs(config.node_id.to_string()),
    })
}

/// Every setting with the value a start with `config` would use and where it comes from,
/// including the dynamic broker configs stored in the data directory (read, not opened).
/// Stored dynamic configs a start would ignore are ignored here too, with the same warning.
pub fn effective_settings(
    merged: &MergedSettings,
    config: &BrokerConfig,
) -> anyhow::Result<Vec<(&'static str, String, String)>> {
    let stored = stored_dynamic_broker_configs(config)?;
    let effective = fjord_broker::dynamic_config::effective_at_start(config.clone(), stored);
    Ok(SETTINGS
        .iter()
        .map(|spec| {
            let (source, value) = effective
                .setting_sources(spec.key)
                .into_iter()
                .next()
                .unwrap_or((ConfigSource::Default, spec.default.to_string()));
            let value = if fjord_broker::config::is_sensitive(spec.key) && !value.is_empty() {
                "[hidden]".to_string()
            } else {
                value
            };
            (spec.key, value, source_label(merged, spec.key, source))
        })
        .collect())
}

/// Prints [`effective_settings`] as a KEY VALUE SOURCE table or as
/// `{"settings":[{"key","value","source","default","dynamic"}]}`.
pub fn print_effective_settings(
    merged: &MergedSettings,
    config: &BrokerConfig,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let settings = effective_settings(merged, config)?;
    if format == OutputFormat::Json {
        let entries: Vec<serde_json::Value> = settings
            .iter()
            .map(|(key, value, source)| {
                serde_json::json!({
                    "key": key,
                    "value": value,
                    "source": source,
                    "default": fjord_broker::dynamic_config::setting_default(key),
                    "dynamic": fjord_broker::dynamic_config::is_dynamic(key),
                })
            })
            .collect();
        return print_json(&serde_json::json!({ "settings": entries }));
    }
    let rows: Vec<Vec<String>> = settings
        .into_iter()
        .map(|(key, value, source)| {
            let value = if value.is_empty() {
                "\"\"".to_string()
            } else {
                value
            };
            vec![key.to_string(), value, source]
        })
        .collect();
    print_table(&["KEY", "VALUE", "SOURCE"], &rows);
    Ok(())
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

    const SAMPLE: &str = include_str!("../../../fjord.toml");

    fn write_temp(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fjord.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_sample_config_sets_nothing_and_lists_every_setting() {
        let (_dir, path) = write_temp(SAMPLE);
        assert!(read_config_file(&path).unwrap().is_empty());
        for spec in SETTINGS {
            assert!(
                SAMPLE.contains(&format!("\n# \"{}\" = ", spec.key)),
                "fjord.toml does not mention {}",
                spec.key
            );
        }
    }

    #[test]
    fn the_sample_config_shows_the_defaults() {
        // Uncomment every `# "key" = value` line: each value must be the key's default, and
        // the whole must be a valid configuration.
        let uncommented: String = SAMPLE
            .lines()
            .filter_map(|line| line.strip_prefix("# \""))
            .map(|line| format!("\"{line}\n"))
            .collect();
        let (_dir, path) = write_temp(&uncommented);
        let values = read_config_file(&path).unwrap();
        assert_eq!(values.len(), SETTINGS.len(), "every setting, once");
        let known: BTreeMap<String, String> = values
            .into_iter()
            .filter(
                |(key, value)| match SETTINGS.iter().find(|s| s.key == key) {
                    Some(spec) => {
                        assert_eq!(value, spec.default, "{key}");
                        true
                    }
                    None => false,
                },
            )
            .collect();
        assert_eq!(known.len(), SETTINGS.len());
        BrokerConfig::from_settings(&known).unwrap();
    }

    #[test]
    fn origins_follow_precedence_and_name_their_source() {
        let mut merged = MergedSettings::default();
        let file = PathBuf::from("/etc/fjord.toml");
        merged.extend(
            [("num.partitions".to_string(), "3".to_string())].into(),
            |_| Origin::ConfigFile(file.clone()),
        );
        merged.extend(
            [
                ("num.partitions".to_string(), "4".to_string()),
                ("listen".to_string(), "h:1".to_string()),
            ]
            .into(),
            |key| Origin::Env(env_var_name(key)),
        );
        merged.insert("listen".into(), "h:2".into(), Origin::Flag("--listen"));
        assert_eq!(merged.values["num.partitions"], "4");
        assert_eq!(
            merged.origin("num.partitions").to_string(),
            "env FJORD_NUM_PARTITIONS"
        );
        assert_eq!(merged.origin("listen").to_string(), "flag --listen");
        assert_eq!(merged.origin("node.id").to_string(), "default");
        assert_eq!(
            Origin::ConfigFile(file).to_string(),
            "config file /etc/fjord.toml"
        );
        assert_eq!(Origin::SetFlag.to_string(), "flag --set");
    }

    #[test]
    fn effective_settings_report_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let mut merged = MergedSettings::default();
        merged.insert(
            "data.dir".into(),
            dir.path().display().to_string(),
            Origin::Flag("--data-dir"),
        );
        merged.insert("num.partitions".into(), "3".into(), Origin::SetFlag);
        merged.insert("log.retention.ms".into(), "1000".into(), Origin::SetFlag);
        std::fs::write(
            dir.path().join("broker-configs.json"),
            r#"{"cluster_default":{"log.retention.ms":"2000","message.max.bytes":"5000"},"broker":{"message.max.bytes":"6000"}}"#,
        )
        .unwrap();
        let config = BrokerConfig::from_settings(&merged.values).unwrap();
        let settings = effective_settings(&merged, &config).unwrap();
        assert_eq!(settings.len(), SETTINGS.len());
        let find = |key: &str| {
            let (_, value, source) = settings.iter().find(|(k, _, _)| *k == key).unwrap();
            (value.as_str(), source.as_str())
        };
        assert_eq!(find("node.id"), ("1", "default"));
        assert_eq!(find("num.partitions"), ("3", "flag --set"));
        assert_eq!(
            find("log.retention.ms"),
            ("2000", "dynamic default broker config")
        );
        assert_eq!(find("message.max.bytes"), ("6000", "dynamic broker config"));
        // Reading the dynamic configs created nothing in the data directory.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn unknown_keys_name_their_source_and_the_closest_setting() {
        let mut merged = MergedSettings::default();
        merged.insert("num.partiton".into(), "3".into(), Origin::SetFlag);
        let err = merged.check_known_keys().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown setting `num.partiton` (from flag --set); did you mean `num.partitions`?"
        );
        assert_eq!(
            closest_setting("log.retention.msec"),
            Some("log.retention.ms")
        );
        assert_eq!(closest_setting("group.max.sise"), Some("group.max.size"));
        assert_eq!(closest_setting("colour"), None);
        assert_eq!(did_you_mean("zzzzzzzzzzzzzzzzzzzz"), "");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn invalid_values_name_key_value_and_source() {
        let mut merged = MergedSettings::default();
        merged.insert(
            "num.partitions".into(),
            "abc".into(),
            Origin::Env("FJORD_NUM_PARTITIONS".into()),
        );
        let err = BrokerConfig::from_settings(&merged.values).unwrap_err();
        let text = merged.explain(err).to_string();
        assert!(
            text.starts_with(
                "invalid value \"abc\" for setting `num.partitions` (from env FJORD_NUM_PARTITIONS): "
            ),
            "{text}"
        );
    }

    #[test]
    fn misspelled_setting_variables_are_errors_others_are_ignored() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ignored = check_environment_names(names(&[
            "FJORD_NUM_PARTITIONS",
            "FJORD_BOOTSTRAP",
            "FJORD_BIN",
            "FJORD_SOMETHING_ELSE_ENTIRELY",
            "PATH",
        ]))
        .unwrap();
        assert_eq!(ignored, ["FJORD_SOMETHING_ELSE_ENTIRELY"]);
        let err = check_environment_names(names(&["FJORD_NUM_PARTITON"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable FJORD_NUM_PARTITON sets no setting; did you mean FJORD_NUM_PARTITIONS (`num.partitions`)?"
        );
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
