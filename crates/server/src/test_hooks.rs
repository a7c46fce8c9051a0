//! Hidden test hooks for fault injection between real processes (docs/cluster-design.md
//! section 9, "Real processes" and "Chaos"). They exist only for tests and are honoured only
//! when the environment has `FJORD_TEST_HOOKS=1`; they are not settings (`--help`,
//! `--print-config` and the README do not list them).
//!
//! * `test.peer.address.overrides` (`--set`, or the config file): where this node dials the
//!   other nodes. Each entry is `ID@HOST:PORT` for node ID's Kafka listener (replica fetchers,
//!   transaction markers: the node channel) or `controller:ID@HOST:PORT` for its controller
//!   listener (Raft frames, broker-to-controller requests), comma-separated. A test puts a
//!   fault-injecting TCP proxy on each directed link (`tests/chaos/mesh.py`) and cuts links to
//!   partition the cluster without root or network namespaces. Every place a node dials
//!   another resolves the address through [`PeerAddresses`]. Given without the switch, the
//!   node refuses to start: a production config must never carry it.
//! * `FJORD_TEST_CLOCK_OFFSET_FILE` (environment): the broker's wall clock
//!   (`fjord_broker::time::now_ms`) is shifted by the milliseconds written in that file
//!   (clock jumps in chaos runs). Without the switch it is ignored with a warning.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use tracing::warn;

use crate::settings::MergedSettings;

/// The switch: hooks are honoured only when this variable is `1`.
pub const TEST_HOOKS_ENV: &str = "FJORD_TEST_HOOKS";
/// The clock-jump hook's file.
pub const CLOCK_OFFSET_FILE_ENV: &str = "FJORD_TEST_CLOCK_OFFSET_FILE";
/// The peer address hook's key.
pub const PEER_ADDRESS_OVERRIDES_KEY: &str = "test.peer.address.overrides";
/// Entries accepted in `test.peer.address.overrides` (two listeners per peer).
const OVERRIDES_MAX: usize = 2 * 1024;

/// Which listener of a peer a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerListener {
    /// The Kafka listener (`listen`, advertised in the broker registration).
    Kafka,
    /// The controller listener (`controller.listen`, in `controller.quorum.voters`).
    Controller,
}

/// The one resolver of node-to-node addresses: the address a peer advertises (or that
/// `controller.quorum.voters` names), unless a test override redirects it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerAddresses {
    overrides: BTreeMap<(PeerListener, i32), String>,
}

impl PeerAddresses {
    /// Parses `ID@HOST:PORT` / `controller:ID@HOST:PORT` entries (also `kafka:ID@HOST:PORT`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut overrides = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if overrides.len() >= OVERRIDES_MAX {
                return Err(format!("more than {OVERRIDES_MAX} entries"));
            }
            let (listener, rest) = match entry.split_once(':') {
                Some((prefix, rest)) if prefix.eq_ignore_ascii_case("controller") => {
                    (PeerListener::Controller, rest)
                }
                Some((prefix, rest)) if prefix.eq_ignore_ascii_case("kafka") => {
                    (PeerListener::Kafka, rest)
                }
                _ => (PeerListener::Kafka, entry),
            };
            let (id, address) = rest
                .split_once('@')
                .ok_or_else(|| format!("{entry:?}: expected [controller:]ID@HOST:PORT"))?;
            let id: i32 = id
                .trim()
                .parse()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| format!("{entry:?}: node id must be a non-negative integer"))?;
            let address = address.trim();
            let port_ok = address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!("{entry:?}: expected HOST:PORT after the node id"));
            }
            if overrides
                .insert((listener, id), address.to_string())
                .is_some()
            {
                return Err(format!("{entry:?}: node {id} is given twice"));
            }
        }
        Ok(Self { overrides })
    }

    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }

    /// Where to dial `listener` of node `node_id`, whose own address is `address`.
    pub fn resolve(&self, listener: PeerListener, node_id: i32, address: &str) -> String {
        self.overrides
            .get(&(listener, node_id))
            .cloned()
            .unwrap_or_else(|| address.to_string())
    }
}

/// The test hooks a start uses.
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    pub peer_addresses: PeerAddresses,
    pub clock_offset_file: Option<PathBuf>,
}

/// Takes the hooks out of the merged settings (so the unknown-key check does not see them)
/// and the environment. Refuses `test.peer.address.overrides` unless `FJORD_TEST_HOOKS=1`;
/// ignores the clock offset file with a warning then.
pub fn take_test_hooks(
    merged: &mut MergedSettings,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<TestHooks> {
    let enabled = env(TEST_HOOKS_ENV).is_some_and(|v| v.trim() == "1");
    let overrides = merged.values.remove(PEER_ADDRESS_OVERRIDES_KEY);
    let origin = merged.origins.remove(PEER_ADDRESS_OVERRIDES_KEY);
    let mut hooks = TestHooks::default();
    if let Some(text) = overrides {
        let origin = origin.map_or_else(|| "unknown".to_string(), |o| o.to_string());
        if !enabled {
            bail!(
                "`{PEER_ADDRESS_OVERRIDES_KEY}` (from {origin}) is a test hook; it is honoured only with {TEST_HOOKS_ENV}=1"
            );
        }
        hooks.peer_addresses = PeerAddresses::parse(&text).map_err(|reason| {
            anyhow::anyhow!(
                "invalid value {text:?} for `{PEER_ADDRESS_OVERRIDES_KEY}` (from {origin}): {reason}"
            )
        })?;
    }
    if let Some(path) = env(CLOCK_OFFSET_FILE_ENV).filter(|p| !p.trim().is_empty()) {
        if enabled {
            hooks.clock_offset_file = Some(PathBuf::from(path));
        } else {
            warn!(
                variable = CLOCK_OFFSET_FILE_ENV,
                "ignoring a test hook: set {TEST_HOOKS_ENV}=1 to use it"
            );
        }
    }
    Ok(hooks)
}

/// Installs what needs installing at start (the clock offset) and says loudly that hooks
/// are active.
pub fn install(hooks: &TestHooks, node_id: i32) {
    if !hooks.peer_addresses.is_empty() {
        for ((listener, peer), address) in &hooks.peer_addresses.overrides {
            warn!(node_id, peer, ?listener, %address, "TEST HOOK: dialing this peer through an override address");
        }
    }
    if let Some(path) = &hooks.clock_offset_file {
        fjord_broker::time::set_clock_offset_file(path.clone());
        warn!(path = %path.display(), offset_ms = fjord_broker::time::clock_offset_ms(),
            "TEST HOOK: the wall clock follows the offset in this file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Origin;
    use proptest::prelude::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn merged_with(value: &str) -> MergedSettings {
        let mut merged = MergedSettings::default();
        merged.insert(
            PEER_ADDRESS_OVERRIDES_KEY.to_string(),
            value.to_string(),
            Origin::SetFlag,
        );
        merged.insert("node.id".to_string(), "1".to_string(), Origin::SetFlag);
        merged
    }

    #[test]
    fn overrides_route_each_listener_of_each_peer() {
        let peers = PeerAddresses::parse(
            "2@127.0.0.1:4002, controller:2@127.0.0.1:5002,kafka:3@localhost:4003",
        )
        .unwrap();
        assert_eq!(
            peers.resolve(PeerListener::Kafka, 2, "127.0.0.1:9093"),
            "127.0.0.1:4002"
        );
        assert_eq!(
            peers.resolve(PeerListener::Controller, 2, "127.0.0.1:19193"),
            "127.0.0.1:5002"
        );
        assert_eq!(
            peers.resolve(PeerListener::Kafka, 3, "127.0.0.1:9094"),
            "localhost:4003"
        );
        // Not overridden: the peer's own address.
        assert_eq!(
            peers.resolve(PeerListener::Controller, 3, "127.0.0.1:19194"),
            "127.0.0.1:19194"
        );
        assert_eq!(
            peers.resolve(PeerListener::Kafka, 2, "a:1"),
            "127.0.0.1:4002"
        );
        assert_eq!(peers.resolve(PeerListener::Kafka, 4, "b:2"), "b:2");
        assert!(PeerAddresses::parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_overrides_are_refused() {
        for bad in [
            "2=127.0.0.1:4002",
            "x@127.0.0.1:4002",
            "-1@127.0.0.1:4002",
            "2@127.0.0.1",
            "2@:4002",
            "2@127.0.0.1:99999",
            "bogus:2@127.0.0.1:4002",
            "2@127.0.0.1:1,2@127.0.0.1:2",
        ] {
            assert!(PeerAddresses::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn hooks_need_the_switch() {
        let mut merged = merged_with("2@127.0.0.1:4002");
        let refused = take_test_hooks(&mut merged, env_of(&[])).unwrap_err();
        assert!(refused.to_string().contains(TEST_HOOKS_ENV), "{refused}");

        let mut merged = merged_with("2@127.0.0.1:4002");
        let hooks = take_test_hooks(
            &mut merged,
            env_of(&[
                (TEST_HOOKS_ENV, "1"),
                (CLOCK_OFFSET_FILE_ENV, "/tmp/offset"),
            ]),
        )
        .unwrap();
        assert_eq!(
            hooks.peer_addresses.resolve(PeerListener::Kafka, 2, "x:1"),
            "127.0.0.1:4002"
        );
        assert_eq!(hooks.clock_offset_file, Some(PathBuf::from("/tmp/offset")));
        // Taken out: the unknown-key check passes, the settings are untouched otherwise.
        assert!(merged.check_known_keys().is_ok());
        assert_eq!(merged.values.get("node.id").map(String::as_str), Some("1"));

        // The clock file alone, without the switch: ignored, no error.
        let mut merged = MergedSettings::default();
        let hooks =
            take_test_hooks(&mut merged, env_of(&[(CLOCK_OFFSET_FILE_ENV, "/tmp/x")])).unwrap();
        assert_eq!(hooks.clock_offset_file, None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in ".{0,80}") {
            let _ = PeerAddresses::parse(&text);
        }

        #[test]
        fn written_overrides_parse_back(entries in proptest::collection::btree_map(
            (any::<bool>(), 0i32..10_000), 1u16..u16::MAX, 0..8)) {
            let text: Vec<String> = entries.iter().map(|((controller, id), port)| {
                let prefix = if *controller { "controller:" } else { "" };
                format!("{prefix}{id}@127.0.0.1:{port}")
            }).collect();
            let peers = PeerAddresses::parse(&text.join(",")).unwrap();
            for ((controller, id), port) in &entries {
                let listener = if *controller { PeerListener::Controller } else { PeerListener::Kafka };
                prop_assert_eq!(peers.resolve(listener, *id, "none:0"), format!("127.0.0.1:{port}"));
            }
        }
    }
}
